/** The SIP message layer: parsing, lazy header access, minimal edits, framing, building. */

export * from "./build.js";
export * from "./errors.js";
export * from "./ids.js";
export * from "./message.js";
export * from "./nameaddr.js";
export * from "./parser.js";
export * from "./stream.js";
export * from "./text.js";
export * from "./types.js";
export * from "./uri.js";
export * from "./validate.js";
