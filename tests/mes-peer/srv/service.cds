using mes from '../db/schema';

// Reads under /sit-svc/Application/{App}/odata/{Entity}; writes as commands posted to
// /sit-svc/Application/{App}/odata/{Command} with a {"command": {...}} body, as Opcenter does.
@path: '/sit-svc/Application/AppJidoka/odata'
service AppJidoka {
  entity WorkOrder      as projection on mes.WorkOrder;
  entity Material             as projection on mes.Material;
  entity ToBeConsumedMaterial as projection on mes.ToBeConsumedMaterial;
  entity ChangePackage        as projection on mes.ChangePackage;
  entity LotHold              as projection on mes.LotHold;
  entity Equipment            as projection on mes.Equipment;
  entity WorkInstruction      as projection on mes.WorkInstruction;
  entity PersonnelCertification as projection on mes.PersonnelCertification;
  @readonly entity NonConformance as projection on mes.NonConformance;
  @readonly entity Hold           as projection on mes.Hold;
  @readonly entity AndonAlert     as projection on mes.AndonAlert;
  @readonly entity OrderLogEntry  as projection on mes.OrderLogEntry;
  @readonly entity SequenceChange as projection on mes.SequenceChange;
  @readonly entity SequenceChangeItem as projection on mes.SequenceChangeItem;
  @readonly entity MaterialRequest as projection on mes.MaterialRequest;

  type CommandResult { Id : String; NId : String; }

  type NonConformanceCommand {
    IdempotencyKey : String; CorrelationId : String; Severity : String; SerialNumber : String;
    MaterialNId : String; WorkOrderNId : String; OperationNId : String; EquipmentNId : String;
    Description : String;
  }
  type HoldCommand { IdempotencyKey : String; CorrelationId : String; SerialNumber : String; Reason : String; }
  type AndonCommand { IdempotencyKey : String; CorrelationId : String; Station : String; Message : String; }
  type SequenceItem { WorkOrderNId : String; Sequence : Integer; PreviousSequence : Integer; }
  type SequenceCommand { IdempotencyKey : String; CorrelationId : String; Reason : String; Sequence : many SequenceItem; }
  type MaterialRequestCommand {
    IdempotencyKey : String; CorrelationId : String; CallOffNId : String; SupplierNId : String;
    MaterialNId : String; Quantity : Decimal; NeededBy : String; Reason : String;
  }
  type OrderLogCommand { IdempotencyKey : String; CorrelationId : String; WorkOrderNId : String; Text : String; }

  action CreateNonConformance(command : NonConformanceCommand) returns CommandResult;
  action PlaceHold(command : HoldCommand) returns CommandResult;
  action ReleaseHold(command : HoldCommand) returns CommandResult;
  action RaiseAndonAlert(command : AndonCommand) returns CommandResult;
  action AppendOrderLogEntry(command : OrderLogCommand) returns CommandResult;
  action ResequenceWorkOrders(command : SequenceCommand) returns CommandResult;
  action ExpediteDelivery(command : MaterialRequestCommand) returns CommandResult;

  // Test control: counts per entity, and the fault mode.
  function Stats() returns String;
  action SetFaults(every : Integer, delayMs : Integer, down : Boolean, requireToken : Boolean, revokeTokens : Boolean, noBatch : Boolean) returns String;
}

// A plain OData v4 service over the same records: created by POST to the entity sets.
@path: '/odata/v4/plain'
service PlainMes {
  entity NonConformance as projection on mes.NonConformance;
  entity Hold           as projection on mes.Hold;
  entity AndonAlert     as projection on mes.AndonAlert;
  entity OrderLogEntry  as projection on mes.OrderLogEntry;
  entity SequenceChange as projection on mes.SequenceChange;
  entity MaterialRequest as projection on mes.MaterialRequest;
}
