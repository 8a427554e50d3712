// Filled in with the engine: after every test, every engine made through the
// test harness is run past its longest timer and must show created == freed.
export {};
