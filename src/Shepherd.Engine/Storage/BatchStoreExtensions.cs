using Shepherd.Engine.Model;

namespace Shepherd.Engine.Storage;

/// <summary>The two ways a batch stops before its items are sent, in terms of <see cref="IBatchStore.EndUnsentAsync"/>.</summary>
public static class BatchStoreExtensions
{
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
