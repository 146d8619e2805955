// Fault injection for the tests, shared by the server's middleware and the SetFaults action.
module.exports = { every: 0, delayMs: 0, down: false, calls: 0 };
