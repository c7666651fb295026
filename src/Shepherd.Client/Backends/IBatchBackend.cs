using Shepherd.Client.Http;

namespace Shepherd.Client.Backends;

/// <summary>One batch API's dialect: how each operation of <see cref="ShepherdClient"/> is spoken.</summary>
internal interface IBatchBackend
{
    Task<Batch> CreateAsync(NewBatch batch, string idempotencyKey, CancellationToken cancellationToken);

    Task<Batch> CreateFromFileAsync(string path, FileBatchOptions options, string idempotencyKey, CancellationToken cancellationToken);

    Task<Batch> GetAsync(string batchId, CancellationToken cancellationToken);

    /// <summary>
    /// The batch once it has ended or <paramref name="wait"/> has passed, read by looks
    /// (<see cref="CallKind.Look"/>): a server that can hold the answer until the batch ends is
    /// asked to; an API that cannot is looked at once, after the wait.
    /// </summary>
    Task<Batch> WatchAsync(string batchId, TimeSpan wait, CancellationToken cancellationToken);

    /// <summary>Every batch the key can see, newest first, one page at a time.</summary>
    IAsyncEnumerable<Batch> ListAsync(CancellationToken cancellationToken);

    Task<Batch> CancelAsync(string batchId, CancellationToken cancellationToken);

    /// <summary>The results, streamed: never more than a page in memory.</summary>
    IAsyncEnumerable<BatchResult> ResultsAsync(string batchId, CancellationToken cancellationToken);

    Task<BatchResult?> ResultAsync(string batchId, string customId, CancellationToken cancellationToken);

    /// <summary>A new batch of the requests of <paramref name="batchId"/> that failed or expired, with their custom ids and bodies.</summary>
    Task<Batch> RetryFailedAsync(string batchId, string idempotencyKey, CancellationToken cancellationToken);
}
