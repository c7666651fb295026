using System.Collections.Concurrent;

namespace Shepherd.Engine.Dispatch;

/// <summary>
/// What the two senders of a batch hold against its budget, told to each other: the dispatcher
/// (realtime and flex requests in flight) and the native runner (the worst case of its open jobs,
/// and what the native answers it recorded cost). A batch the planner splits between them is then
/// kept to one budget: each counts what the other holds and has spent beside its own.
/// </summary>
internal sealed class BudgetHolds
{
    private readonly ConcurrentDictionary<string, long> _realtime = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, long> _native = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, long> _nativeSpent = new(StringComparer.Ordinal);

    /// <summary>What the dispatcher's requests in flight of a batch may cost.</summary>
    public long Realtime(string batchId) => _realtime.GetValueOrDefault(batchId);

    /// <summary>What the native runner's open jobs of a batch may cost.</summary>
    public long Native(string batchId) => _native.GetValueOrDefault(batchId);

    /// <summary>What the native answers of a batch recorded in this process cost, since it started: it only grows.</summary>
    public long NativeSpent(string batchId) => _nativeSpent.GetValueOrDefault(batchId);

    public void HoldRealtime(string batchId, long nanos) => Set(_realtime, batchId, nanos);

    public void HoldNative(string batchId, long nanos) => Set(_native, batchId, nanos);

    public void SpendNative(string batchId, long nanos) => _nativeSpent.AddOrUpdate(batchId, nanos, (_, spent) => spent + nanos);

    private static void Set(ConcurrentDictionary<string, long> holds, string batchId, long nanos)
    {
        if (nanos == 0)
        {
            holds.TryRemove(batchId, out _);
        }
        else
        {
            holds[batchId] = nanos;
        }
    }
}
