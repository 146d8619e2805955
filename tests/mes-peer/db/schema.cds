// Opcenter-shaped entities: what Jidoka reads and what its commands create.
namespace mes;

entity WorkOrder {
  key Id              : String(40);
      NId             : String(40);
      ProductionType  : String(40);
      Vin             : String(17);
      Sequence        : Integer;
      Status          : String(20);
      LastUpdatedOn   : Timestamp;
}

entity NonConformance {
  key Id             : UUID;
      NId            : String(40);
      IdempotencyKey : String(200);
      CorrelationId  : String(200);
      Severity       : String(20);
      SerialNumber   : String(40);
      MaterialNId    : String(60);
      WorkOrderNId   : String(40);
      OperationNId   : String(40);
      EquipmentNId   : String(60);
      Description    : String(4000);
      CreatedOn      : Timestamp;
}

entity Hold {
  key Id             : UUID;
      IdempotencyKey : String(200);
      CorrelationId  : String(200);
      SerialNumber   : String(40);
      Reason         : String(2000);
      Released       : Boolean default false;
      CreatedOn      : Timestamp;
}

entity AndonAlert {
  key Id             : UUID;
      IdempotencyKey : String(200);
      CorrelationId  : String(200);
      Station        : String(40);
      Message        : String(2000);
      CreatedOn      : Timestamp;
}

entity OrderLogEntry {
  key Id             : UUID;
      IdempotencyKey : String(200);
      CorrelationId  : String(200);
      WorkOrderNId   : String(40);
      Text           : String(4000);
      CreatedOn      : Timestamp;
}

// A new build sequence written by Jidoka: the work orders whose place changed.
entity SequenceChange {
  key Id             : UUID;
      IdempotencyKey : String(200);
      CorrelationId  : String(200);
      Reason         : String(4000);
      Sequence       : Composition of many SequenceChangeItem on Sequence.change = $self;
      CreatedOn      : Timestamp;
}

// A request to a supplier written by Jidoka: expedite the delivery of a call-off in transit.
entity MaterialRequest {
  key Id             : UUID;
      IdempotencyKey : String(200);
      CorrelationId  : String(200);
      CallOffNId     : String(60);
      SupplierNId    : String(60);
      MaterialNId    : String(60);
      Quantity       : Decimal(15, 3);
      NeededBy       : String(40);
      Reason         : String(4000);
      CreatedOn      : Timestamp;
}

entity SequenceChangeItem {
  key change       : Association to SequenceChange;
  key WorkOrderNId : String(40);
      Sequence     : Integer;
}

// Master data Jidoka reads: materials, the BOM lines of each production type with the
// material they consume (a navigation, read with $expand), engineering changes, holds on
// supplier lots, equipment with its calibration dates and work instructions.
entity Material {
  key Id           : String(40);
      NId          : String(60);
      Description  : String(200);
      Serialized   : Boolean;
      Supplier     : String(60);
}

entity ToBeConsumedMaterial {
  key Id                    : String(40);
      ProductionType        : String(40);
      Material              : Association to Material;
      Quantity              : Decimal(12, 3);
      WorkCenter            : String(40);
      OperationNId          : String(40);
      OptionRule            : String(400);
      EffectiveFromSequence : Integer;
      EffectiveToSequence   : Integer;
      EffectiveFrom         : Timestamp;
      EffectiveTo           : Timestamp;
      // Stamped by the MES on every write: what incremental reads ask after.
      LastUpdatedOn         : Timestamp @cds.on.insert: $now @cds.on.update: $now;
}

entity ChangePackage {
  key Id                   : String(40);
      NId                  : String(40);
      OldMaterialNId       : String(60);
      NewMaterialNId       : String(60);
      CutInSequence        : Integer;
      CutInDate            : Timestamp;
      OldValidUntil        : Timestamp;
      OldValidUntilSequence: Integer;
      Description          : String(2000);
      Status               : String(20);
      // Stamped by the MES on every write: what incremental reads ask after.
      LastUpdatedOn         : Timestamp @cds.on.insert: $now @cds.on.update: $now;
}

entity LotHold {
  key Id        : String(40);
      LotNId    : String(60);
      Active    : Boolean;
      // Stamped by the MES on every write: what incremental reads ask after.
      LastUpdatedOn         : Timestamp @cds.on.insert: $now @cds.on.update: $now;
}

entity Equipment {
  key Id               : String(40);
      NId              : String(60);
      EquipmentType    : String(40);
      WorkCenter       : String(40);
      LastCalibratedOn : Timestamp;
      CalibrationDueOn : Timestamp;
      // Stamped by the MES on every write: what incremental reads ask after.
      LastUpdatedOn         : Timestamp @cds.on.insert: $now @cds.on.update: $now;
}

// One row per operator and work center; Opcenter keeps it with personnel, other plants in a
// training system.
entity PersonnelCertification {
  key Id            : String(40);
      PersonnelNId  : String(40);
      PersonnelName : String(200);
      WorkCenter    : String(40);
      Level         : Integer;
      ValidUntil    : Timestamp;
      // Stamped by the MES on every write: what incremental reads ask after.
      LastUpdatedOn         : Timestamp @cds.on.insert: $now @cds.on.update: $now;
}

entity WorkInstruction {
  key Id                    : String(40);
      NId                   : String(40);
      WorkCenter            : String(40);
      OperationNId          : String(40);
      Name                  : String(200);
      Description           : String(4000);
      MinCertificationLevel : Integer;
      // Stamped by the MES on every write: what incremental reads ask after.
      LastUpdatedOn         : Timestamp @cds.on.insert: $now @cds.on.update: $now;
}
