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
