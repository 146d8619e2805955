// Project-local server: CAP's own, bound to loopback only, with test fault injection in front
// of every OData call except the test-control endpoints.
const cds = require('@sap/cds');
const faults = require('./faults');

// OAuth2 client credentials, for the tests: client `jidoka`, secret `s3cret`.
const issued = new Set();
let tokenCounter = 0;

cds.on('bootstrap', (app) => {
  const listen = app.listen.bind(app);
  app.listen = (port, ...rest) => listen(port, '127.0.0.1', ...rest);
  // With TLS_CERT and TLS_KEY, serve https (the tests' own CA signs the certificate).
  if (process.env.TLS_CERT && process.env.TLS_KEY) {
    const fs = require('fs');
    const https = require('https');
    const options = { cert: fs.readFileSync(process.env.TLS_CERT), key: fs.readFileSync(process.env.TLS_KEY) };
    app.listen = (port, ...rest) => https.createServer(options, app).listen(port, '127.0.0.1', ...rest);
  }
  const express = require('express');
  app.post('/oauth/token', express.urlencoded({ extended: false }), (req, res) => {
    const b = req.body || {};
    if (b.grant_type !== 'client_credentials' || b.client_id !== 'jidoka' || b.client_secret !== 's3cret') {
      return res.status(401).json({ error: 'invalid_client' });
    }
    faults.tokensIssued += 1;
    tokenCounter += 1;
    const token = `tok-${tokenCounter}-${Date.now()}`;
    issued.add(token);
    res.json({ access_token: token, token_type: 'Bearer', expires_in: 3600 });
  });
  app.use((req, res, next) => {
    if (/\/(SetFaults|Stats)(\(\))?$/.test(req.path) || req.path === '/oauth/token') return next();
    if (faults.revokeTokens) { issued.clear(); faults.revokeTokens = false; }
    if (faults.requireToken) {
      const m = /^Bearer (.+)$/.exec(req.headers.authorization || '');
      if (!m || !issued.has(m[1])) return res.status(401).json({ error: { code: '401', message: 'token missing or expired' } });
    }
    faults.calls += 1;
    if (/\/\$batch$/.test(req.path)) {
      // A service without JSON batch, for the fall-back path.
      if (faults.noBatch) return res.status(404).json({ error: { code: '404', message: 'no $batch here (test fault)' } });
      faults.batches += 1;
    }
    if (faults.down) return res.status(503).json({ error: { code: '503', message: 'MES down (test fault)' } });
    if (faults.every > 0 && faults.calls % faults.every === 0) {
      return res.status(500).json({ error: { code: '500', message: 'injected failure (test fault)' } });
    }
    if (faults.delayMs > 0) return setTimeout(next, faults.delayMs);
    next();
  });
});

module.exports = cds.server;
