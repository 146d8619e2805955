// Fault injection for the tests, shared by the server's middleware and the test-control actions.
module.exports = { every: 0, delayMs: 0, down: false, calls: 0, requireToken: false, revokeTokens: false, tokensIssued: 0, noBatch: false, batches: 0 };
