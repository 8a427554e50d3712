// What the message-layer tests share.
import { expect } from "vitest";
import { SipParseError } from "../../src/message/errors.js";

/** The SipParseError `run` throws; fails the test with `expected` when it throws nothing. */
export function thrownParseError(run: () => unknown, expected: string): SipParseError {
  try {
    run();
  } catch (e) {
    expect(e).toBeInstanceOf(SipParseError);
    return e as SipParseError;
  }
  throw new Error(expected);
}
