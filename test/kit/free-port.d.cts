/** Types of free-port.cjs (shared by the tests, the benchmark and the scripts). */
export declare function freePort(): Promise<number>;
