// The `lost` signals of a handle's holds (not part of the public API): how a Lock or an RwLock
// tells its holder that a hold stopped being exclusive. Shared by every lock kind.

import * as diagnostics from './diagnostics'
import { LockLostError } from './errors'
import type { Lock } from './lock'
import { native } from './native'
import type { RwLock } from './rw-lock'

/** What the loss signals need of a native handle (Lock's and RwLock's). */
interface LossSource {
  lostToken(): bigint | null
  lostMessage(): string | null
  watchLost(callback: () => void): void
}

/**
 * The `lost` signals of one handle's holds: an AbortController per hold, made only when the user
 * first reads `lost` during that hold (or when someone listens on `proclock:lost`), and aborted
 * with a LockLostError when the native handle reports the loss. Nothing of it runs on the hot path.
 * The native notice holds the handle object only weakly, so watching never keeps a Lock alive.
 */
export class LossSignals {
  readonly #native: LossSource
  readonly #owner: WeakRef<Lock | RwLock>
  #hold: { token: bigint; controller: AbortController } | null = null
  #watching = false

  constructor(owner: Lock | RwLock, source: LossSource) {
    this.#owner = new WeakRef(owner)
    this.#native = source
  }

  /** The signal of the current hold (`token`), or of the hold that was lost; null if neither. */
  signal(current: bigint | null): AbortSignal | null {
    const lostToken = native(() => this.#native.lostToken())
    const token = lostToken ?? current
    if (token === null) return null
    if (this.#hold?.token !== token) this.#hold = { token, controller: new AbortController() }
    const { signal } = this.#hold.controller
    if (lostToken !== null) this.#abort(lostToken)
    else this.watch()
    return signal
  }

  /** The hold with `token` is the one that was lost. */
  lostHold(token: bigint): boolean {
    return native(() => this.#native.lostToken()) === token
  }

  /** Ask the native handle for a notice when it is lost (once). */
  watch(): void {
    if (this.#watching) return
    this.#watching = true
    const self = new WeakRef(this)
    native(() =>
      this.#native.watchLost(() => {
        const me = self.deref()
        if (me !== undefined) me.#onLost()
      }),
    )
  }

  #onLost(): void {
    const token = native(() => this.#native.lostToken())
    // Lost while idle: no hold to tell; the handle's next call throws LockLostError.
    if (token === null) return
    this.#abort(token)
    const owner = this.#owner.deref()
    if (owner !== undefined) diagnostics.lost(owner, token)
  }

  #abort(token: bigint): void {
    const hold = this.#hold
    if (hold === null || hold.token !== token || hold.controller.signal.aborted) return
    hold.controller.abort(new LockLostError(native(() => this.#native.lostMessage()) ?? undefined))
  }
}
