using System.Text.Json;
using Microsoft.AspNetCore.Http;
using Shepherd.Engine.Batches;
using Shepherd.Engine.Formats;
using Shepherd.Engine.Model;
using Shepherd.Engine.Storage;
using Shepherd.Server.Http;

namespace Shepherd.Server.Batches;

/// <summary>How batches come to be: created from a body or a file, retried, and recovered after a restart.</summary>
internal sealed partial class BatchService
{
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
            throw RequestProblems.Rejected(RequestProblems.Together(refused, result.Errors), result.MoreErrors);
        }

        if (caller.Limits?.QueuedItems is { } most && await store.GetUsageAsync(caller.Owner, cancellationToken) is { QueuedItems: var queued } && queued > most)
        {
            await store.DeleteBatchAsync(id, CancellationToken.None);
            throw new ApiException(429, $"The batch was not created: with it this key's tenant would have {queued} requests waiting, over its limit of {most}. Wait for batches to finish, or send fewer requests.", null, "queued_items_limit");
        }

        NotifyBatchesChanged();
        return await store.GetBatchAsync(id, cancellationToken) ?? throw new InvalidOperationException($"Batch {id} vanished.");
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
    /// A new inline batch of the requests of an ended batch that failed or expired, with their
    /// custom ids and bodies, linked by the metadata <c>retry_of</c>. Without an idempotency key
    /// the original's id serves as one, so asking twice returns the same retry. The key is read
    /// only once there is a retry to make: a batch that cannot be retried is refused for that first.
    /// </summary>
    public async Task<BatchRecord> RetryFailedAsync(BatchRecord original, Func<string?> idempotencyKey, Caller caller, CancellationToken cancellationToken)
    {
        if (!original.HasEnded)
        {
            throw new ApiException(StatusCodes.Status409Conflict, $"Batch '{original.Id}' is {BatchStatusWords.Of(original)}; retry its failed requests once it has ended.", "batch_id", "batch_not_ended");
        }

        var linesPath = paths.SpoolFile("retry-" + Guid.NewGuid().ToString("N") + ".jsonl");
        try
        {
            if (await WriteFailedAsync(original, linesPath, cancellationToken) == 0)
            {
                throw ApiException.BadRequest($"Batch '{original.Id}' has no failed or expired requests to retry.", "batch_id", "nothing_to_retry");
            }

            var metadata = new Dictionary<string, string>(original.Metadata, StringComparer.Ordinal) { ["retry_of"] = original.Id };
            var retry = new NewBatch(BatchIds.NewBatchId(), null, original.Endpoint, original.Priority, Fields.Window(original.CompletionWindow))
            {
                // The retry belongs to the original's tenant, also when an admin asks for it.
                Owner = original.Owner,
                Door = BatchDoor.Inline,
                CompletionWindowText = original.CompletionWindow,
                Metadata = metadata.Count <= Fields.MaxMetadataPairs ? metadata : original.Metadata,
                Model = original.Model,
                Cache = original.Cache,
                OutputSchema = original.OutputSchema,
                MaxReasks = original.MaxReasks,
                IdempotencyKey = idempotencyKey() ?? "retry_failed:" + original.Id,
            };
            return await CreateAndImportAsync(retry, linesPath, original.Endpoint, [], caller, cancellationToken);
        }
        finally
        {
            File.Delete(linesPath);
        }
    }

    /// <summary>Writes the requests of <paramref name="original"/> that failed or expired to <paramref name="linesPath"/>, one a line; returns how many.</summary>
    private async Task<long> WriteFailedAsync(BatchRecord original, string linesPath, CancellationToken cancellationToken)
    {
        var count = 0L;
        await using var lines = new FileStream(linesPath, FileMode.CreateNew, FileAccess.Write, FileShare.None, 64 * 1024, FileOptions.Asynchronous);
        await using var json = new Utf8JsonWriter(lines, JsonWriterExtensions.Options);
        await foreach (var request in store.ReadRequestsAsync(original.Id, [ItemState.Failed, ItemState.Expired], cancellationToken))
        {
            // In the original's own dialect, so the retry's results read as the original's did.
            json.WriteStartObject();
            json.WriteString("custom_id", request.CustomId);
            if (original.Format == InputFormat.Anthropic)
            {
                json.WritePropertyName("params");
            }
            else
            {
                json.WriteString("method", "POST");
                json.WriteString("url", original.Endpoint);
                json.WritePropertyName("body");
            }

            json.WriteRawValue(request.Body, skipInputValidation: true);
            json.WriteEndObject();
            await json.FlushAsync(cancellationToken);
            json.Reset();
            lines.WriteByte((byte)'\n');
            count++;
        }

        return count;
    }

    /// <summary>
    /// The mode of a new batch of <paramref name="model"/> (null: of the models its requests name)
    /// at <paramref name="endpoint"/> that comes in by <paramref name="door"/>: the one its create
    /// asked for in <paramref name="field"/>, else the door's in the server's configuration, else
    /// auto when it has a deadline and an upstream's batch API or flex tier serves it, realtime
    /// otherwise. A word that is no mode, or a mode no upstream can serve, is a 400 naming the field.
    /// </summary>
    public BatchMode ModeOf(BatchDoor door, string? asked, string field, string? model, string endpoint, bool hasDeadline)
    {
        BatchMode? mode = asked is null ? null
            : BatchModeWords.Parse(asked) ?? throw ApiException.BadRequest($"{field} \"{asked}\" is not one of {string.Join(", ", BatchModeWords.All.Select(m => $"\"{m.Word}\""))}.", field, "invalid_mode");
        var configured = mode is null && options.DefaultModes.TryGetValue(door, out var byDoor) ? byDoor : (BatchMode?)null;
        var choice = native.ChooseMode(mode ?? configured, model, endpoint, hasDeadline);
        if (choice.Refusal is not { } refusal)
        {
            return choice.Mode;
        }

        var which = configured is null ? $"{field} \"{asked}\"" : $"mode \"{BatchModeWords.Of(choice.Mode)}\", this server's for the {door.ToString().ToLowerInvariant()} door (server.modes.{door.ToString().ToLowerInvariant()} in its configuration),";
        throw ApiException.BadRequest($"{which} cannot run: {refusal}.", field, choice.Code);
    }

    /// <summary>The metadata that turns the answer cache on or off for a file batch (the OpenAI create has no field for it).</summary>
    private const string CacheKey = "shepherd_cache";

    /// <summary>The metadata that says whether a file batch replays answers to requests that ask for sampling.</summary>
    private const string CacheSampledKey = "shepherd_cache_sampled";

    /// <summary>How an inline create (<c>cache</c>, <c>cache_sampled</c>) asks to use the answer cache; see <see cref="CacheUseOf(bool?, string, bool?, string)"/>.</summary>
    public CacheUse CacheUseOf(IReadOnlyDictionary<string, JsonElement> fields) =>
        CacheUseOf(Fields.Bool(fields, "cache"), "cache", Fields.Bool(fields, "cache_sampled"), "cache_sampled");

    /// <summary>How a file batch's metadata (<c>shepherd_cache</c>, <c>shepherd_cache_sampled</c>) asks to use the answer cache; see <see cref="CacheUseOf(bool?, string, bool?, string)"/>.</summary>
    public CacheUse CacheUseOf(IReadOnlyDictionary<string, string>? metadata) =>
        CacheUseOf(Fields.Bool(metadata, CacheKey), "metadata." + CacheKey, Fields.Bool(metadata, CacheSampledKey), "metadata." + CacheSampledKey);

    /// <summary>
    /// How a new batch uses the server's answer cache: as its create asked in <paramref name="field"/>
    /// (<paramref name="cache"/>, and <paramref name="sampled"/> in <paramref name="sampledField"/>:
    /// whether requests that ask for sampling are replayed), else as the server's configuration says.
    /// Asking for a cache of a server that keeps none is a 400 naming the field.
    /// </summary>
    public CacheUse CacheUseOf(bool? cache, string field, bool? sampled, string sampledField)
    {
        if (options.AnswerCache is not { } configured)
        {
            return cache == true || sampled is not null
                ? throw ApiException.BadRequest(
                    $"{(cache == true ? field : sampledField)}: this server keeps no answer cache (server.cache in its configuration); every request is sent.",
                    cache == true ? field : sampledField, "cache_unavailable")
                : CacheUse.Off;
        }

        return cache == false ? CacheUse.Off : sampled ?? configured.ReplaySampled ? CacheUse.All : CacheUse.Unsampled;
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
    private async Task CheckLimitsAsync(Caller caller, CancellationToken cancellationToken)
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

    /// <summary>
    /// Picks up where a stopped server left off: leases are released, uploads being read are
    /// read again from the start, and creates that never answered are removed. Collections of
    /// calls that can wait are left to <see cref="Gateway.DeadlineCalls.RecoverAsync"/>: each call in them was answered with its id.
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
            else if (batch.Door != BatchDoor.Gateway)
            {
                await store.DeleteBatchAsync(batch.Id, cancellationToken);
            }
        }
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
}
