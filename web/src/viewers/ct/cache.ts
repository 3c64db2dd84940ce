/** A small least-recently-used cache: at most ``capacity`` entries, the least recently used
 * one dropped (and handed to ``dispose``, e.g. to close an ImageBitmap) when a new one comes. */
export class BoundedCache<K, V> {
  private readonly entries = new Map<K, V>();

  constructor(
    private readonly capacity: number,
    private readonly dispose: (value: V) => void = () => undefined,
  ) {}

  get size(): number {
    return this.entries.size;
  }

  /** The value of ``key``, now the most recently used; undefined when absent. */
  get(key: K): V | undefined {
    const value = this.entries.get(key);
    if (value !== undefined) {
      this.entries.delete(key);
      this.entries.set(key, value);
    }
    return value;
  }

  /** Stores ``value`` under ``key`` (disposing a different value it replaces). */
  set(key: K, value: V): void {
    const old = this.entries.get(key);
    this.entries.delete(key);
    if (old !== undefined && old !== value) this.dispose(old);
    this.entries.set(key, value);
    while (this.entries.size > this.capacity) {
      const [oldestKey, oldest] = this.entries.entries().next().value as [K, V];
      this.entries.delete(oldestKey);
      this.dispose(oldest);
    }
  }

  /** Drops (and disposes) every entry. */
  clear(): void {
    for (const value of this.entries.values()) this.dispose(value);
    this.entries.clear();
  }
}
