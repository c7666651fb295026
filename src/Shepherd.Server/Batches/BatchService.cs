using Shepherd.Engine.Batches;
using Shepherd.Engine.Dispatch;
using Shepherd.Engine.Model;
using Shepherd.Engine.Native;
using Shepherd.Engine.Storage;
using Shepherd.Server.Hosting;
using Shepherd.Server.Http;

namespace Shepherd.Server.Batches;

/// <summary>The importers of the server: uploaded files and the bodies of create calls have their own limits.</summary>
/// <param name="Files">Reads uploaded files (at most <see cref="ServerOptions.MaxFileRequests"/> requests).</param>
/// <param name="Creates">Reads inline and Anthropic bodies (at most <see cref="ServerOptions.MaxCreateRequests"/> requests).</param>
/// <param name="MaxLineBytes">The largest single request.</param>
internal sealed record Importers(BatchImporter Files, BatchImporter Creates, int MaxLineBytes);

/// <summary>
/// What the doors ask of batches: create, get, list, cancel, delete, their results, and a retry
/// of the failed ones. The doors never reach the store themselves: here alone is it decided who
/// sees which batch, how a create is limited, and whom to tell that batches changed, so every
/// door holds to the same rules.
/// </summary>
internal sealed partial class BatchService(
    IBatchStore store,
    Dispatcher dispatcher,
    NativeBatchRunner native,
    TimeProvider time,
    BackgroundImports imports,
    BatchFinalizer finalizer,
    BatchWatch watch,
    ServerPaths paths,
    Importers importers,
    ServerOptions options)
{
    /// <summary>Every door a batch can come in by: what the OpenAI door and the dashboard look up and list.</summary>
    private static readonly BatchDoor[] EveryDoor = [BatchDoor.OpenAI, BatchDoor.Inline, BatchDoor.Anthropic, BatchDoor.Run, BatchDoor.Gateway];

    private static readonly BatchDoor[] AnthropicDoor = [BatchDoor.Anthropic];

    /// <summary>
    /// The doors whose batches a call by <paramref name="door"/> sees. The OpenAI door
    /// (Shepherd's own, which the CLI, the .NET client and the dashboard use) sees batches of
    /// every door; the Anthropic door only its own, whose ids and objects are Anthropic's.
    /// </summary>
    private static BatchDoor[] Seen(BatchDoor door) => door == BatchDoor.Anthropic ? AnthropicDoor : EveryDoor;

    /// <summary>The caller's batch as <paramref name="door"/> sees it, or a 404: another tenant's batch does not exist for the caller.</summary>
    public async Task<BatchRecord> GetAsync(Caller caller, string batchId, BatchDoor door, CancellationToken cancellationToken)
    {
        var batch = await store.GetBatchAsync(batchId, cancellationToken);
        var visible = batch is not null && caller.Sees(batch.Owner) && Seen(door).Contains(batch.Door);
        return visible ? batch! : throw ApiException.NotFound($"No batch found with id '{batchId}'.", "batch_id");
    }

    /// <summary>A page of the caller's batches as <paramref name="door"/> sees them, newest first.</summary>
    public Task<Page<BatchRecord>> ListAsync(Caller caller, BatchDoor door, PageRequest page, CancellationToken cancellationToken) =>
        store.ListBatchesAsync(caller.Listing, Seen(door), page, cancellationToken);

    /// <summary>
    /// <paramref name="batch"/> once it has ended, or as it is when <paramref name="wait"/> (at
    /// most <see cref="BatchWatch.MaxWait"/>) has passed: a client waiting for the end learns of
    /// it at once instead of at its next poll.
    /// </summary>
    public Task<BatchRecord> UntilEndedAsync(BatchRecord batch, TimeSpan wait, CancellationToken cancellationToken) =>
        watch.UntilEndedAsync(batch, wait, cancellationToken);

    /// <summary>
    /// The lanes that serve the models of <paramref name="batch"/>'s requests, as the dispatcher
    /// last saw them: while it is in progress, or with <paramref name="all"/>, whatever its
    /// status. The models are those its requests name (a batch's <c>model</c> is only their
    /// default), so a batch never shows the lanes of other batches' models.
    /// </summary>
    public async Task<IReadOnlyList<LaneState>> LanesOfAsync(BatchRecord batch, bool all, CancellationToken cancellationToken)
    {
        if (batch.Status != BatchStatus.InProgress && !all)
        {
            return [];
        }

        var models = await store.ListModelsAsync(batch.Id, cancellationToken);
        return [.. dispatcher.Lanes.Where(lane => models.Contains(lane.Model))];
    }

    /// <summary>The batch's answers over time in buckets of <paramref name="bucket"/>, its failures by kind and its latencies.</summary>
    public Task<BatchActivity> ActivityAsync(BatchRecord batch, TimeSpan bucket, CancellationToken cancellationToken) =>
        store.GetActivityAsync(batch.Id, bucket, cancellationToken);

    /// <summary>The batch's requests in order from <paramref name="offset"/>, with their results; a request not yet ended has none.</summary>
    public IAsyncEnumerable<ItemResult> ResultsAsync(BatchRecord batch, long offset, CancellationToken cancellationToken) =>
        store.ReadResultsAsync(batch.Id, offset, cancellationToken);

    /// <summary>The request of the batch with <paramref name="customId"/>, with its result, or a 404.</summary>
    public async Task<ItemResult> ResultAsync(BatchRecord batch, string customId, CancellationToken cancellationToken) =>
        await store.GetResultAsync(batch.Id, customId, cancellationToken)
            ?? throw ApiException.NotFound($"Batch '{batch.Id}' has no request with custom_id '{customId}'.", "custom_id");

    /// <summary>The bodies of the batch's requests that ended in one of <paramref name="states"/>, in order.</summary>
    public IAsyncEnumerable<ImportItem> RequestsAsync(BatchRecord batch, IReadOnlyCollection<ItemState> states, CancellationToken cancellationToken) =>
        store.ReadRequestsAsync(batch.Id, states, cancellationToken);

    /// <summary>Writes the batch's result lines to <paramref name="results"/> and its error lines to <paramref name="errors"/>, as its output and error files hold them.</summary>
    public Task<ExportSummary> ExportAsync(BatchRecord batch, Stream results, Stream errors, CancellationToken cancellationToken) =>
        ResultExporter.ExportAsync(store, batch, results, errors, cancellationToken);

    /// <summary>Removes an ended batch with its requests and results.</summary>
    public Task DeleteAsync(BatchRecord batch, CancellationToken cancellationToken) =>
        store.DeleteBatchAsync(batch.Id, cancellationToken);

    /// <summary>
    /// Cancels a batch: one being validated stops reading and ends cancelled; one in progress
    /// sends nothing more, keeps what has finished, and ends cancelled once requests in flight return.
    /// A batch already cancelling or cancelled is returned as it is.
    /// </summary>
    public async Task<BatchRecord> CancelAsync(BatchRecord batch, CancellationToken cancellationToken)
    {
        if (batch.CancellingAt is not null)
        {
            return batch;
        }

        if (batch.HasEnded || batch.Status == BatchStatus.Finalizing)
        {
            var state = batch.HasEnded ? $"has already ended ({BatchStatusWords.Of(batch)})" : "is finalizing: every request has ended and its result files are being written";
            throw new ApiException(409, $"Batch '{batch.Id}' {state}; there is nothing to cancel.", "batch_id", "batch_not_cancellable");
        }

        if (batch.Status == BatchStatus.Validating && batch.Door == BatchDoor.Gateway)
        {
            // Its calls were each answered with an id: they are not dropped while others still join.
            throw new ApiException(409, $"Batch '{batch.Id}' is still collecting calls that can wait; it starts within a minute, and can be cancelled then.", "batch_id", "batch_not_cancellable");
        }

        if (batch.Status == BatchStatus.Validating)
        {
            await imports.StopAsync(batch.Id);
            if (await store.GetBatchAsync(batch.Id, cancellationToken) is { Status: BatchStatus.Validating })
            {
                await store.ClearItemsAsync(batch.Id, cancellationToken);
            }
        }

        // The answer is the batch as the cancel left it: cancelling while requests are in flight,
        // cancelled when none were. Read again after the dispatcher is told, it would depend on
        // how fast the dispatcher hands back what it held unsent.
        var cancelled = await store.CancelBatchAsync(batch.Id, time.GetUtcNow(), cancellationToken) ?? batch;
        NotifyBatchesChanged();
        finalizer.Wake();
        return cancelled;
    }

    /// <summary>Reads from the store, so <c>/readyz</c> can tell whether it answers; throws what the store throws.</summary>
    public Task ProbeStoreAsync(CancellationToken cancellationToken) => store.GetBatchAsync("batch_readyz", cancellationToken);

    /// <summary>Tells the dispatcher and the native runner that batches changed, and the held looks that one may have ended (refused, cancelled).</summary>
    public void NotifyBatchesChanged()
    {
        dispatcher.NotifyBatchesChanged();
        native.NotifyBatchesChanged();
        watch.Pulse();
    }
}
