using System.Buffers;
using System.Globalization;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Shepherd.Engine.Batches;
using Shepherd.Engine.Formats;
using Shepherd.Engine.Model;
using Shepherd.Engine.Pricing;
using Shepherd.Server.Hosting;
using Shepherd.Server.Http;

namespace Shepherd.Server.OpenAI;

/// <summary>
/// <c>/v1/batches</c>: batches of an uploaded file (the OpenAI Batch API) and inline batches
/// (Shepherd's own shape), with paged results.
/// </summary>
internal sealed class BatchesApi(ServerCore core, BatchWatch watch)
{
    public void Map(WebApplication app)
    {
        app.MapPost("/v1/batches", (Delegate)CreateAsync);
        app.MapGet("/v1/batches", (Delegate)ListAsync);
        app.MapGet("/v1/batches/{id}", async (HttpContext context, string id) =>
        {
            var wait = Fields.Seconds(context.Request.Query, "wait");
            var batch = await core.GetBatchAsync(Caller.Of(context), id, BatchDoor.OpenAI, context.RequestAborted);
            if (wait > TimeSpan.Zero)
            {
                batch = await watch.UntilEndedAsync(batch, wait, context.RequestAborted);
            }

            var lanes = await core.LanesOfAsync(batch, all: false, context.RequestAborted);
            var results = await SeedResults.ReadAsync(core.Store, batch, context.RequestAborted);
            var now = core.Time.GetUtcNow();
            return new JsonBody(json => OpenAIJson.WriteBatch(json, batch, now, lanes, results));
        });
        app.MapPost("/v1/batches/{id}/cancel", async (HttpContext context, string id) =>
        {
            var batch = await core.GetBatchAsync(Caller.Of(context), id, BatchDoor.OpenAI, context.RequestAborted);
            return Answer(await core.CancelAsync(batch, context.RequestAborted));
        });
        app.MapGet("/v1/batches/{id}/results", ResultsAsync);
        app.MapPost("/v1/batches/{id}/retry_failed", RetryFailedAsync);
        app.MapGet("/v1/batches/{id}/results/{customId}", async (HttpContext context, string id, string customId) =>
        {
            var batch = await core.GetBatchAsync(Caller.Of(context), id, BatchDoor.OpenAI, context.RequestAborted);
            var item = await core.Store.GetResultAsync(batch.Id, customId, context.RequestAborted)
                ?? throw ApiException.NotFound($"Batch '{batch.Id}' has no request with custom_id '{customId}'.", "custom_id");
            return new JsonBody(json =>
            {
                using var lines = new ResultLineWriter(batch.Format, batch.Id);
                WriteResult(json, lines, item);
            });
        });
    }

    private JsonBody Answer(BatchRecord batch)
    {
        var now = core.Time.GetUtcNow();
        return new JsonBody(json => OpenAIJson.WriteBatch(json, batch, now));
    }

    private async Task<IResult> ListAsync(HttpContext context)
    {
        var query = context.Request.Query;
        var page = await core.Store.ListBatchesAsync(Caller.Of(context).Listing, ServerCore.EveryDoor,
            new PageRequest(Fields.Int(query, "limit", 20, 1, 100), Fields.Text(query, "after")), context.RequestAborted);
        var now = core.Time.GetUtcNow();
        return new JsonBody(json => OpenAIJson.WriteList(json, page, b => b.Id, (w, b) => OpenAIJson.WriteBatch(w, b, now)));
    }

    private async Task<IResult> CreateAsync(HttpContext context)
    {
        var caller = Caller.Of(context);
        var idempotencyKey = Fields.IdempotencyKey(context.Request);
        using var body = await CreateBody.ReadAsync(context.Request.Body, core.Paths.SpoolFolder, core.Options.MaxCreateRequests, core.Importers.MaxLineBytes, context.RequestAborted);
        var metadata = Fields.Metadata(body.Fields);
        var window = Fields.String(body.Fields, "completion_window");
        var batch = body.HasRequests
            ? await CreateInlineAsync(body, caller, new NewBatch(BatchIds.NewBatchId(), null, CompletionWindow: Fields.Window(window))
            {
                Owner = caller.Owner, Door = BatchDoor.Inline, CompletionWindowText = window, Metadata = metadata, IdempotencyKey = idempotencyKey, BodySha256 = body.Sha256,
            }, context.RequestAborted)
            : await CreateFromFileAsync(body, caller, new NewBatch(BatchIds.NewBatchId(), null, CompletionWindow: Fields.Window(window ?? "24h"))
            {
                Owner = caller.Owner, Door = BatchDoor.OpenAI, CompletionWindowText = window ?? "24h", Metadata = metadata, IdempotencyKey = idempotencyKey, BodySha256 = body.Sha256,
            }, context.RequestAborted);
        return Answer(batch);
    }

    private async Task<BatchRecord> CreateFromFileAsync(CreateBody body, Caller caller, NewBatch batch, CancellationToken cancellationToken)
    {
        Fields.OnlyKnown(body.Fields, "input_file_id", "endpoint", "completion_window", "metadata", "budget_usd");
        var fileId = Fields.String(body.Fields, "input_file_id", required: true)!;
        var endpoint = Endpoint(Fields.String(body.Fields, "endpoint", required: true)!);
        var file = await core.GetFileAsync(caller, fileId, cancellationToken);
        if (file.Purpose != "batch")
        {
            throw ApiException.BadRequest($"File '{file.Id}' has purpose \"{file.Purpose}\"; a batch reads a file uploaded with purpose \"batch\".", "input_file_id");
        }

        return await core.CreateFromFileAsync(batch with { Endpoint = endpoint, InputFileId = file.Id, BudgetNanos = Budget(body) }, caller, cancellationToken);
    }

    private async Task<BatchRecord> CreateInlineAsync(CreateBody body, Caller caller, NewBatch batch, CancellationToken cancellationToken)
    {
        Fields.OnlyKnown(body.Fields, "requests", "model", "endpoint", "priority", "metadata", "completion_window", "mode", "budget_usd");
        var budget = Budget(body);

        var endpoint = Endpoint(Fields.String(body.Fields, "endpoint") ?? BatchEndpoints.ChatCompletions);
        var model = Fields.String(body.Fields, "model");
        var priority = Fields.String(body.Fields, "priority") is { } text
            ? Words.ParsePriority(text) ?? throw ApiException.BadRequest($"priority \"{text}\" is not one of \"low\", \"normal\", \"high\".", "priority")
            : BatchPriority.Normal;
        if (body.RequestCount == 0)
        {
            throw ApiException.BadRequest("\"requests\" is empty; a batch needs at least one request.", "requests", InputErrorCodes.EmptyFile);
        }

        var mode = Mode(Fields.String(body.Fields, "mode"), model, endpoint, batch.CompletionWindow, budget is not null);

        var linesPath = core.Paths.SpoolFile("inline-" + Guid.NewGuid().ToString("N") + ".jsonl");
        try
        {
            var refused = await InlineRequests.ConvertAsync(body.SpoolPath, linesPath, endpoint, model, core.Importers.MaxLineBytes, "The batch was not created", cancellationToken);
            return await core.CreateAndImportAsync(batch with { Endpoint = endpoint, Model = model, Priority = priority, BudgetNanos = budget, Mode = mode }, linesPath, endpoint, refused, caller, cancellationToken);
        }
        finally
        {
            File.Delete(linesPath);
        }
    }

    /// <summary>The optional <c>budget_usd</c> of a create, in billionths of a dollar.</summary>
    private static long? Budget(CreateBody body) =>
        body.Fields.TryGetValue("budget_usd", out var field) && field.ValueKind != JsonValueKind.Null
            ? field.ValueKind == JsonValueKind.Number && field.TryGetDecimal(out var usd) && Cost.BudgetFromUsd(usd) is { } nanos
                ? nanos
                : throw ApiException.BadRequest("budget_usd must be a number of US dollars, 0 or more.", "budget_usd", "invalid_budget")
            : null;

    /// <summary>
    /// A new inline batch of the requests of an ended batch that failed or expired, with their
    /// custom ids and bodies, linked by the metadata <c>retry_of</c>. Without an idempotency key
    /// the original's id serves as one, so asking twice returns the same retry.
    /// </summary>
    private async Task<IResult> RetryFailedAsync(HttpContext context, string id)
    {
        var caller = Caller.Of(context);
        var original = await core.GetBatchAsync(caller, id, BatchDoor.OpenAI, context.RequestAborted);
        if (!original.HasEnded)
        {
            throw new ApiException(StatusCodes.Status409Conflict, $"Batch '{original.Id}' is {BatchStatusWords.Of(original)}; retry its failed requests once it has ended.", "batch_id", "batch_not_ended");
        }

        var linesPath = core.Paths.SpoolFile("retry-" + Guid.NewGuid().ToString("N") + ".jsonl");
        try
        {
            var count = 0L;
            await using (var lines = new FileStream(linesPath, FileMode.CreateNew, FileAccess.Write, FileShare.None, 64 * 1024, FileOptions.Asynchronous))
            await using (var json = new Utf8JsonWriter(lines, JsonWriterExtensions.Options))
            {
                await foreach (var request in core.Store.ReadRequestsAsync(original.Id, [ItemState.Failed, ItemState.Expired], context.RequestAborted))
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
                    await json.FlushAsync(context.RequestAborted);
                    json.Reset();
                    lines.WriteByte((byte)'\n');
                    count++;
                }
            }

            if (count == 0)
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
                IdempotencyKey = Fields.IdempotencyKey(context.Request) ?? "retry_failed:" + original.Id,
            };
            return Answer(await core.CreateAndImportAsync(retry, linesPath, original.Endpoint, [], caller, context.RequestAborted));
        }
        finally
        {
            File.Delete(linesPath);
        }
    }

    private async Task<IResult> ResultsAsync(HttpContext context, string id)
    {
        var batch = await core.GetBatchAsync(Caller.Of(context), id, BatchDoor.OpenAI, context.RequestAborted);
        var offset = Fields.Long(context.Request.Query, "offset");
        var limit = Fields.Int(context.Request.Query, "limit", 100, 1, 1000);
        var items = new List<ItemResult>(limit + 1);
        await foreach (var item in core.Store.ReadResultsAsync(batch.Id, offset, context.RequestAborted))
        {
            items.Add(item);
            if (items.Count > limit)
            {
                break;
            }
        }

        var hasMore = items.Count > limit;
        var page = items.Take(limit).ToList();
        return new JsonBody(json =>
        {
            using var lines = new ResultLineWriter(batch.Format, batch.Id);
            json.WriteStartObject();
            json.WriteString("object", "list");
            json.WriteStartArray("data");
            foreach (var item in page)
            {
                WriteResult(json, lines, item);
            }

            json.WriteEndArray();
            json.WriteNumber("offset", offset);
            json.WriteNumber("limit", limit);
            if (hasMore)
            {
                json.WriteNumber("next_offset", offset + page.Count);
            }
            else
            {
                json.WriteNull("next_offset");
            }

            json.WriteBoolean("has_more", hasMore);
            json.WriteEndObject();
        });
    }

    /// <summary>
    /// A result line of the batch's format, with its <c>status</c> (<paramref name="status"/>
    /// when given) and cost, and <c>original_prompt</c> when <paramref name="prompt"/> is given;
    /// a request not yet ended is <c>pending</c>.
    /// </summary>
    internal static void WriteResult(Utf8JsonWriter json, ResultLineWriter lines, ItemResult item, string? status = null, OriginalPrompt? prompt = null)
    {
        status ??= Words.ItemStatus(item.State);
        if (status == "pending")
        {
            json.WriteStartObject();
            json.WriteNull("id");
            json.WriteString("custom_id", item.CustomId);
            json.WriteNull("response");
            json.WriteNull("error");
            json.WriteString("status", status);
            json.WriteNumber("cost_usd", 0);
            json.WriteEndObject();
            return;
        }

        // The line is a JSON object: its closing brace gives way to the status.
        var line = lines.Format(item).Span;
        var cost = Cost.ToUsd(item.Result?.CostNanos ?? 0).ToString(CultureInfo.InvariantCulture);
        var original = prompt is { } given ? ",\"original_prompt\":" + (given.Text is null ? "null" : JsonSerializer.Serialize(given.Text)) : "";
        var tail = System.Text.Encoding.UTF8.GetBytes($",\"status\":\"{status}\",\"cost_usd\":{cost}{original}}}");
        var buffer = ArrayPool<byte>.Shared.Rent(line.Length + tail.Length);
        try
        {
            var written = line[..^1].Length;
            line[..^1].CopyTo(buffer);
            tail.CopyTo(buffer.AsSpan(written));
            written += tail.Length;
            json.WriteRawValue(buffer.AsSpan(0, written), skipInputValidation: true);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    /// <summary>
    /// The mode an inline batch runs in. <c>native</c> needs an upstream with a native batch API
    /// serving the model and endpoint; <c>auto</c> takes native when there is one and the batch's
    /// completion window (none counts as unlimited) is at least the providers' 24 hours, and
    /// realtime otherwise. A budget holds only in realtime: native mode hands the whole batch over
    /// at once, so it refuses one and <c>auto</c> picks realtime.
    /// </summary>
    private BatchMode Mode(string? mode, string? model, string endpoint, TimeSpan? window, bool budgeted)
    {
        switch (mode)
        {
            case null or "realtime":
                return BatchMode.Realtime;
            case "native" when budgeted:
                throw ApiException.BadRequest(
                    "budget_usd cannot be kept in mode \"native\": the provider is handed the whole batch at once. Use mode \"realtime\" for a budget.",
                    "budget_usd",
                    "budget_not_supported");
            case "native":
                return core.Native.CanRun(model, endpoint)
                    ? BatchMode.Native
                    : throw ApiException.BadRequest(
                        $"mode \"native\" needs an upstream with a native batch API serving {(model is null ? "the batch's models" : $"the model {model}")} at {endpoint}; none is configured.",
                        "mode",
                        "native_batch_unavailable");
            case "auto":
                return !budgeted && (window is null || window >= TimeSpan.FromHours(24)) && model is not null && core.Native.CanRun(model, endpoint)
                    ? BatchMode.Native
                    : BatchMode.Realtime;
            default:
                throw ApiException.BadRequest($"mode \"{mode}\" is not one of \"realtime\", \"native\", \"auto\".", "mode");
        }
    }

    /// <summary>The canonical url of a known endpoint, or a 400 naming the known ones.</summary>
    internal static string Endpoint(string endpoint) =>
        BatchEndpoints.Find(endpoint) == endpoint
            ? endpoint
            : throw ApiException.BadRequest($"endpoint \"{endpoint}\" is not one of {string.Join(", ", BatchEndpoints.All)}.", "endpoint", "invalid_endpoint");
}
