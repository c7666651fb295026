using System.Text.Json.Nodes;
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

    /// <summary>The results of the ended <paramref name="batch"/>, streamed: never more than a page in memory.</summary>
    IAsyncEnumerable<BatchResult> ResultsAsync(Batch batch, CancellationToken cancellationToken);

    /// <summary>One result of the ended <paramref name="batch"/>, or null when it has no such custom id.</summary>
    Task<BatchResult?> ResultAsync(Batch batch, string customId, CancellationToken cancellationToken);

    /// <summary>
    /// A new batch of the requests of the ended <paramref name="batch"/> that failed or expired,
    /// with their custom ids and bodies; the one made before when asked again; null when none did.
    /// </summary>
    Task<Batch?> RetryFailedAsync(Batch batch, string idempotencyKey, CancellationToken cancellationToken);

    /// <summary>
    /// Sends <paramref name="body"/> to <paramref name="url"/> as a call that can wait until
    /// <paramref name="deadline"/>, answered at once with its id; only a Shepherd server takes such calls.
    /// </summary>
    Task<string> StartCallAsync(string url, JsonObject body, TimeSpan deadline, CancellationToken cancellationToken);

    /// <summary>
    /// One look at a call that could wait, held by the server a while for the answer: the answer,
    /// or null while it is not in. A refusal or failure the server keeps as the answer is thrown
    /// with its <see cref="ShepherdApiException.CallId"/>.
    /// </summary>
    Task<CallAnswer?> LookAtCallAsync(string callId, CallKind kind, CancellationToken cancellationToken);
}
