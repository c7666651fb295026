using Shepherd.Engine.Model;

namespace Shepherd.Engine.Storage;

/// <summary>
/// The store's calls in the words callers use: the two claims (<see cref="IBatchStore.ClaimAsync"/>)
/// and the two ways a batch stops before its items are sent (<see cref="IBatchStore.EndUnsentAsync"/>).
/// </summary>
public static class BatchStoreExtensions
{
    /// <summary>Leases the dispatcher's items (realtime and flex) of <paramref name="model"/>, as <see cref="IBatchStore.ClaimAsync"/> says.</summary>
    public static Task<IReadOnlyList<ClaimedItem>> ClaimAsync(this IBatchStore store, string model, string? batchId, int max, DateTimeOffset now, DateTimeOffset leaseUntil, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(store);
        return store.ClaimAsync(model, batchId, native: false, max, now, leaseUntil, cancellationToken);
    }

    /// <summary>Leases the native items of <paramref name="model"/> in <paramref name="batchId"/>, those the native runner hands to a provider's batch API.</summary>
    public static Task<IReadOnlyList<ClaimedItem>> ClaimNativeAsync(this IBatchStore store, string model, string batchId, int max, DateTimeOffset now, DateTimeOffset leaseUntil, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(store);
        ArgumentNullException.ThrowIfNull(batchId);
        return store.ClaimAsync(model, batchId, native: true, max, now, leaseUntil, cancellationToken);
    }

    /// <summary>
    /// Cancels a batch: items not yet sent end <see cref="ItemState.Cancelled"/> at once; the
    /// batch is <see cref="BatchStatus.Cancelling"/> until the items in flight end, then
    /// <see cref="BatchStatus.Cancelled"/>. A batch that has ended is returned unchanged.
    /// Returns null when there is no such batch.
    /// </summary>
    public static async Task<BatchRecord?> CancelBatchAsync(this IBatchStore store, string batchId, DateTimeOffset now, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(store);
        await store.EndUnsentAsync(batchId, ItemState.Cancelled, now, cancellationToken);
        return await store.GetBatchAsync(batchId, cancellationToken);
    }

    /// <summary>
    /// Expires a batch whose completion window has passed: items not yet sent end
    /// <see cref="ItemState.Expired"/>; the batch ends <see cref="BatchStatus.Expired"/> when the
    /// items in flight end.
    /// </summary>
    public static Task ExpireBatchAsync(this IBatchStore store, string batchId, DateTimeOffset now, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(store);
        return store.EndUnsentAsync(batchId, ItemState.Expired, now, cancellationToken);
    }
}
