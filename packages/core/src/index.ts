export * from "./clock.js";
export * from "./message/types.js";
export * from "./transport/types.js";
