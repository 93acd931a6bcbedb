/** The package's version: the same as the Python package gemini-tokens it comes with. */
export const VERSION = "0.1.0";
