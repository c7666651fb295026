using System.Globalization;
using System.Text.RegularExpressions;
using Microsoft.AspNetCore.Http;
using Shepherd.Engine.Batches;
using Shepherd.Engine.Dispatch;
using Shepherd.Engine.Model;
using Shepherd.Engine.Native;
using Shepherd.Engine.Formats;
using Shepherd.Engine.Storage;
using Shepherd.Server.Http;

namespace Shepherd.Server.Hosting;

/// <summary>The importers of the server: uploaded files and the bodies of create calls have their own limits.</summary>
/// <param name="Files">Reads uploaded files (at most <see cref="ServerOptions.MaxFileRequests"/> requests).</param>
/// <param name="Creates">Reads inline and Anthropic bodies (at most <see cref="ServerOptions.MaxCreateRequests"/> requests).</param>
/// <param name="MaxLineBytes">The largest single request.</param>
internal sealed record Importers(BatchImporter Files, BatchImporter Creates, int MaxLineBytes);

/// <summary>What the doors share: the store and engine, ownership checks, and batch creation and cancelling.</summary>
internal sealed partial class ServerCore(
    IBatchStore store,
    Dispatcher dispatcher,
    NativeBatchRunner native,
    ServerOptions options,
    TimeProvider time,
    BackgroundImports imports,
    BatchFinalizer finalizer,
    BatchWatch watch,
    ServerPaths paths,
    Importers importers)
{
    public IBatchStore Store => store;

    public ServerOptions Options => options;

    public TimeProvider Time => time;

    public ServerPaths Paths => paths;

    public Importers Importers => importers;

    /// <summary>Runs batches of native mode; also says whether a batch can run so.</summary>
    public NativeBatchRunner Native => native;

    /// <summary>Tells the dispatcher and the native runner that batches changed, and the held looks that one may have ended (refused, cancelled).</summary>
    public void NotifyBatchesChanged()
    {
        dispatcher.NotifyBatchesChanged();
        native.NotifyBatchesChanged();
        watch.Pulse();
    }

    /// <summary>Every door a batch can come in by: what the OpenAI door and the dashboard look up and list.</summary>
    public static readonly BatchDoor[] EveryDoor = [BatchDoor.OpenAI, BatchDoor.Inline, BatchDoor.Anthropic, BatchDoor.Run];

    /// <summary>
    /// The caller's batch as <paramref name="door"/> sees it, or a 404: another tenant's batch
    /// does not exist for the caller. The OpenAI door (Shepherd's own, which the CLI and the
    /// .NET client use) sees batches of every door; the Anthropic door only its own, whose ids
    /// and objects are Anthropic's.
    /// </summary>
    public async Task<BatchRecord> GetBatchAsync(Caller caller, string batchId, BatchDoor door, CancellationToken cancellationToken)
    {
        var batch = await store.GetBatchAsync(batchId, cancellationToken);
        var visible = batch is not null && caller.Sees(batch.Owner)
            && (door == BatchDoor.OpenAI || batch.Door == BatchDoor.Anthropic);
        return visible ? batch! : throw ApiException.NotFound($"No batch found with id '{batchId}'.", "batch_id");
    }

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

    /// <summary>The caller's file, or a 404.</summary>
    public async Task<FileRecord> GetFileAsync(Caller caller, string fileId, CancellationToken cancellationToken)
    {
        var file = await store.GetFileAsync(fileId, cancellationToken);
        return file is not null && caller.Sees(file.Owner)
            ? file
            : throw ApiException.NotFound($"No file found with id '{fileId}'.", "file_id");
    }

    /// <summary>
    /// Creates <paramref name="batch"/> and reads <paramref name="linesPath"/> into it before
    /// answering. A rejected input leaves no batch behind and is answered with a 400 that names
    /// each bad request as <c>requests[i]</c>. A create repeated with the same idempotency key
    /// returns the first batch.
    /// </summary>
    public async Task<BatchRecord> CreateAndImportAsync(NewBatch batch, string linesPath, string? endpoint, IReadOnlyList<InputError> refused, Caller caller, CancellationToken cancellationToken)
    {
        await CheckLimitsAsync(caller, cancellationToken);
        var id = await CreateOnceAsync(batch, cancellationToken);
        if (id != batch.Id)
        {
            return await store.GetBatchAsync(id, cancellationToken) ?? throw new InvalidOperationException($"Batch {id} vanished.");
        }

        ImportResult result;
        try
        {
            await using var lines = File.OpenRead(linesPath);
            result = await importers.Creates.ReadIntoAsync(lines, id, endpoint, cancellationToken);
        }
        catch
        {
            // A half-read body must not stay behind as a batch; the client may retry.
            await store.DeleteBatchAsync(id, CancellationToken.None);
            throw;
        }

        if (!result.Accepted || refused.Count > 0)
        {
            await store.DeleteBatchAsync(id, CancellationToken.None);
            throw RequestsRejected(Together(refused, result.Errors), result.MoreErrors);
        }

        if (caller.Limits?.QueuedItems is { } most && await store.GetUsageAsync(caller.Owner, cancellationToken) is { QueuedItems: var queued } && queued > most)
        {
            await store.DeleteBatchAsync(id, CancellationToken.None);
            throw new ApiException(429, $"The batch was not created: with it this key's tenant would have {queued} requests waiting, over its limit of {most}. Wait for batches to finish, or send fewer requests.", null, "queued_items_limit");
        }

        NotifyBatchesChanged();
        return await store.GetBatchAsync(id, cancellationToken) ?? throw new InvalidOperationException($"Batch {id} vanished.");
    }

    /// <summary>Creates the batch, or finds the one its idempotency key made; a key reused for another body is 422.</summary>
    private async Task<string> CreateOnceAsync(NewBatch batch, CancellationToken cancellationToken)
    {
        try
        {
            return await store.CreateBatchAsync(batch, cancellationToken);
        }
        catch (IdempotencyKeyReusedException ex)
        {
            throw new ApiException(StatusCodes.Status422UnprocessableEntity, ex.Message, "Idempotency-Key", "idempotency_key_reused");
        }
    }

    /// <summary>
    /// Refuses a create (429) when the caller's tenant is at its limit of open batches, or has no
    /// room left for queued requests. A file's requests are counted once it has been read.
    /// </summary>
    public async Task CheckLimitsAsync(Caller caller, CancellationToken cancellationToken)
    {
        if (caller.Limits is not { } limits || (limits.OpenBatches is null && limits.QueuedItems is null))
        {
            return;
        }

        var usage = await store.GetUsageAsync(caller.Owner, cancellationToken);
        if (limits.OpenBatches is { } open && usage.OpenBatches >= open)
        {
            throw new ApiException(429, $"The batch was not created: this key's tenant has {usage.OpenBatches} open batches, its limit. Wait for one to end, or cancel one.", null, "open_batches_limit");
        }

        if (limits.QueuedItems is { } queued && usage.QueuedItems >= queued)
        {
            throw new ApiException(429, $"The batch was not created: this key's tenant has {usage.QueuedItems} requests waiting, its limit. Wait for batches to finish.", null, "queued_items_limit");
        }
    }

    /// <summary>Creates a batch of an uploaded file and starts reading the file into it; the batch answers validating.</summary>
    public async Task<BatchRecord> CreateFromFileAsync(NewBatch batch, Caller caller, CancellationToken cancellationToken)
    {
        await CheckLimitsAsync(caller, cancellationToken);
        var id = await CreateOnceAsync(batch, cancellationToken);
        // The answer is the batch as created (validating), read before the reading starts: read
        // after, it would depend on how fast a small file is read.
        var created = await store.GetBatchAsync(id, cancellationToken) ?? throw new InvalidOperationException($"Batch {id} vanished.");
        if (id == batch.Id)
        {
            StartReading(id, batch.InputFileId!, batch.Endpoint);
        }

        return created;
    }

    /// <summary>
    /// Picks up where a stopped server left off: leases are released, uploads being read are
    /// read again from the start, and creates that never answered are removed.
    /// </summary>
    public async Task RecoverAsync(CancellationToken cancellationToken)
    {
        await store.ReleaseLeasesAsync(cancellationToken);
        foreach (var batch in await store.ListValidatingBatchesAsync(cancellationToken))
        {
            if (batch.Door == BatchDoor.OpenAI && batch.InputFileId is { } fileId)
            {
                await store.ClearItemsAsync(batch.Id, cancellationToken);
                StartReading(batch.Id, fileId, batch.Endpoint);
            }
            else
            {
                await store.DeleteBatchAsync(batch.Id, cancellationToken);
            }
        }
    }

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

    private void StartReading(string batchId, string fileId, string? endpoint) =>
        imports.Start(batchId, async cancellationToken =>
        {
            Stream input;
            try
            {
                input = await store.OpenFileAsync(fileId, cancellationToken);
            }
            catch (Exception ex) when (ex is IOException or StoreException)
            {
                await store.RejectBatchAsync(batchId, [new InputError("input_file_unreadable", $"the input file {fileId} can no longer be read: {ex.Message}", null)], cancellationToken);
                NotifyBatchesChanged();
                return;
            }

            await using (input)
            {
                await importers.Files.ReadIntoAsync(input, batchId, endpoint, cancellationToken);
            }

            NotifyBatchesChanged();
        });

    /// <summary>A 400 naming each bad line as the request it came from, <c>requests[i]</c>, led by <paramref name="refusal"/>.</summary>
    public static ApiException RequestsRejected(IReadOnlyList<InputError> errors, long? unlisted, string refusal = "The batch was not created")
    {
        static string Param(InputError error) => error.Line is { } line ? $"requests[{line - 1}]" : "requests";
        static string Index(Match line) => $"requests[{long.Parse(line.Groups[1].ValueSpan, CultureInfo.InvariantCulture) - 1}]";
        var problems = errors.Select(e => $"{Param(e)}: {LineReference().Replace(e.Message, Index)}").ToList();
        return ApiException.Rejected(problems, unlisted, Param(errors[0]), errors[0].Code, refusal);
    }

    /// <summary>
    /// The problems a door found in requests it could not pass on (<paramref name="refused"/>)
    /// with those the reader found in the rest, in request order. The reader's "no request" is
    /// left out when the door refused requests: they were there.
    /// </summary>
    public static List<InputError> Together(IReadOnlyList<InputError> refused, IReadOnlyList<InputError> found) =>
        [.. refused.Concat(found.Where(e => refused.Count == 0 || e.Code != InputErrorCodes.EmptyFile)).OrderBy(e => e.Line ?? 0)];

    [GeneratedRegex(@"\bline (\d+)")]
    private static partial Regex LineReference();
}
