// The size limits of the public API (not exported from the package), in one place for every
// module that checks or cuts text. The core enforces the same limits again; they are checked
// here first so that an over-long argument gets a Node-style RangeError with a stable `code`
// before anything reaches the native side.

/**
 * A lock name, in UTF-8 bytes: the room the shm slot and the lock file keep for the readable name
 * that `list()` shows (a name never becomes a path: it is hashed).
 */
export const MAX_NAME_BYTES = 255

/**
 * A holder's description, in UTF-8 bytes: the room the shm backend's holder record keeps for it
 * (the same limit applies to the file backend, so a description never depends on the backend).
 */
export const MAX_DESCRIPTION_BYTES = 256
