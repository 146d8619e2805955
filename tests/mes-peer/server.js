// Project-local server: CAP's own, bound to loopback only, with test fault injection in front
// of every OData call except the test-control endpoints.
const cds = require('@sap/cds');
const faults = require('./faults');

cds.on('bootstrap', (app) => {
  const listen = app.listen.bind(app);
  app.listen = (port, ...rest) => listen(port, '127.0.0.1', ...rest);
  app.use((req, res, next) => {
    if (/\/(SetFaults|Stats)(\(\))?$/.test(req.path)) return next();
    faults.calls += 1;
    if (faults.down) return res.status(503).json({ error: { code: '503', message: 'MES down (test fault)' } });
    if (faults.every > 0 && faults.calls % faults.every === 0) {
      return res.status(500).json({ error: { code: '500', message: 'injected failure (test fault)' } });
    }
    if (faults.delayMs > 0) return setTimeout(next, faults.delayMs);
    next();
  });
});

module.exports = cds.server;
