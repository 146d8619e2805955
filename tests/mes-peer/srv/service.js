// Command handlers. Like a real MES, creating twice creates two records: idempotency is the
// client's job (it reads back by key before a retry). Faults are injected for the tests.
const cds = require('@sap/cds');

const faults = require('../faults');

module.exports = cds.service.impl(function () {
  const { NonConformance, Hold, AndonAlert, OrderLogEntry, SequenceChange, MaterialRequest, WorkOrder } = cds.entities('mes');
  let ncCounter = 0;
  const now = () => new Date().toISOString();

  this.on('CreateNonConformance', async (req) => {
    const c = req.data.command || {};
    if (!c.IdempotencyKey) return req.reject(400, 'IdempotencyKey is required');
    ncCounter += 1;
    const row = { ID: undefined, ...c, NId: `NC-${String(ncCounter).padStart(6, '0')}`, CreatedOn: now() };
    delete row.ID;
    const id = cds.utils.uuid();
    await INSERT.into(NonConformance).entries({ Id: id, ...row });
    return { Id: id, NId: row.NId };
  });
  const simple = (entity) => async (req) => {
    const c = req.data.command || {};
    if (!c.IdempotencyKey) return req.reject(400, 'IdempotencyKey is required');
    const id = cds.utils.uuid();
    await INSERT.into(entity).entries({ Id: id, ...c, CreatedOn: now() });
    return { Id: id, NId: id };
  };
  this.on('PlaceHold', simple(Hold));
  this.on('RaiseAndonAlert', simple(AndonAlert));
  this.on('AppendOrderLogEntry', simple(OrderLogEntry));
  this.on('ExpediteDelivery', async (req) => {
    const c = req.data.command || {};
    if (!c.CallOffNId) return req.reject(400, 'CallOffNId is required');
    return simple(MaterialRequest)(req);
  });
  this.on('ReleaseHold', async (req) => {
    const c = req.data.command || {};
    if (!c.SerialNumber) return req.reject(400, 'SerialNumber is required');
    await UPDATE(Hold).set({ Released: true }).where({ SerialNumber: c.SerialNumber });
    const id = cds.utils.uuid();
    await INSERT.into(OrderLogEntry).entries({ Id: id, IdempotencyKey: c.IdempotencyKey, CorrelationId: c.CorrelationId,
      Text: `hold released for ${c.SerialNumber}`, CreatedOn: now() });
    return { Id: id, NId: id };
  });

  // A new build sequence: recorded with its items, and each work order's planned sequence
  // number moved, in one transaction.
  this.on('ResequenceWorkOrders', async (req) => {
    const c = req.data.command || {};
    if (!c.IdempotencyKey) return req.reject(400, 'IdempotencyKey is required');
    const items = c.Sequence || [];
    if (!items.length) return req.reject(400, 'Sequence is empty');
    // Optimistic concurrency: every work order must still have the number the change was
    // computed from, or nothing changes.
    for (const i of items) {
      const wo = await SELECT.one.from(WorkOrder).where({ NId: i.WorkOrderNId });
      if (!wo) return req.reject(404, `work order ${i.WorkOrderNId} does not exist`);
      if (i.PreviousSequence != null && wo.Sequence !== i.PreviousSequence) {
        return req.reject(409, `work order ${i.WorkOrderNId} is at number ${wo.Sequence}, not ${i.PreviousSequence}: the sequence changed since`);
      }
    }
    const id = cds.utils.uuid();
    await INSERT.into(SequenceChange).entries({ Id: id, IdempotencyKey: c.IdempotencyKey,
      CorrelationId: c.CorrelationId, Reason: c.Reason, CreatedOn: now(),
      Sequence: items.map((i) => ({ WorkOrderNId: i.WorkOrderNId, Sequence: i.Sequence })) });
    for (const i of items) {
      await UPDATE(WorkOrder).set({ Sequence: i.Sequence, LastUpdatedOn: now() }).where({ NId: i.WorkOrderNId });
    }
    return { Id: id, NId: id };
  });

  this.on('Stats', async () => {
    const count = async (e) => (await SELECT.one.from(e).columns('count(*) as n')).n;
    return JSON.stringify({
      NonConformance: await count(NonConformance), Hold: await count(Hold),
      AndonAlert: await count(AndonAlert), OrderLogEntry: await count(OrderLogEntry),
      SequenceChange: await count(SequenceChange), MaterialRequest: await count(MaterialRequest),
      calls: faults.calls, tokensIssued: faults.tokensIssued, batches: faults.batches,
    });
  });
  this.on('SetFaults', async (req) => {
    faults.every = req.data.every || 0;
    faults.delayMs = req.data.delayMs || 0;
    faults.down = !!req.data.down;
    faults.requireToken = !!req.data.requireToken;
    if (req.data.revokeTokens) faults.revokeTokens = true;
    faults.noBatch = !!req.data.noBatch;
    return 'ok';
  });
});
