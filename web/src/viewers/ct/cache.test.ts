import { describe, expect, it, vi } from "vitest";
import { BoundedCache } from "./cache";

describe("BoundedCache", () => {
  it("drops and disposes the least recently used entry beyond its capacity", () => {
    const dispose = vi.fn();
    const cache = new BoundedCache<string, number>(2, dispose);
    cache.set("a", 1);
    cache.set("b", 2);
    expect(cache.get("a")).toBe(1); // a is now the most recent
    cache.set("c", 3);
    expect(cache.get("b")).toBeUndefined();
    expect(dispose).toHaveBeenCalledWith(2);
    expect([cache.get("a"), cache.get("c"), cache.size]).toEqual([1, 3, 2]);
  });

  it("disposes a replaced value and everything on clear", () => {
    const dispose = vi.fn();
    const cache = new BoundedCache<string, number>(4, dispose);
    cache.set("a", 1);
    cache.set("a", 5);
    expect(dispose).toHaveBeenCalledWith(1);
    cache.set("b", 2);
    cache.clear();
    expect(dispose.mock.calls.map(([v]) => v)).toEqual([1, 5, 2]);
    expect(cache.size).toBe(0);
  });
});
