using System.Buffers;
using System.Globalization;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Shepherd.Engine.Batches;
using Shepherd.Engine.Formats;
using Shepherd.Engine.Model;
using Shepherd.Engine.Pricing;
using Shepherd.Server.Batches;
using Shepherd.Server.Http;

namespace Shepherd.Server.OpenAI;

/// <summary>
/// <c>/v1/batches</c>: batches of an uploaded file (the OpenAI Batch API) and inline batches
/// (Shepherd's own shape), with paged results.
/// </summary>
internal sealed class BatchesApi(BatchService batches, FileService files, CreateBodies bodies, TimeProvider time)
{
    /// <summary>The metadata key a file batch names its mode by.</summary>
    private const string ModeKey = "shepherd_mode";

    /// <summary>The fields of an inline create.</summary>
    internal static readonly string[] InlineFields = ["requests", "model", "endpoint", "priority", "metadata", "deadline", "completion_window", "mode", "budget_usd", "cache", "cache_sampled", "output_schema", "max_invalid_attempts"];

    /// <summary>The metadata key a file batch names how often an answer that does not fit is asked again by, as its create has no field for it.</summary>
    private const string MaxInvalidKey = "shepherd_max_invalid_attempts";

    public void Map(IEndpointRouteBuilder app)
    {
        var group = app.MapGroup("/v1/batches");
        group.MapPost("/", CreateAsync);
        group.MapGet("/", ListAsync);
        group.MapGet("/{id}", GetAsync);
        group.MapPost("/{id}/cancel", CancelAsync);
        group.MapGet("/{id}/results", ResultsAsync);
        group.MapPost("/{id}/retry_failed", RetryFailedAsync);
        group.MapGet("/{id}/results/{customId}", ResultAsync);
    }

    private async Task<JsonBody> GetAsync(string id, Caller caller, HttpRequest request, CancellationToken cancellationToken)
    {
        var wait = Fields.Seconds(request.Query, "wait");
        var batch = await batches.GetAsync(caller, id, BatchDoor.OpenAI, cancellationToken);
        if (wait > TimeSpan.Zero)
        {
            batch = await batches.UntilEndedAsync(batch, wait, cancellationToken);
        }

        var lanes = await batches.LanesOfAsync(batch, all: false, cancellationToken);
        var results = await SeedResults.ReadAsync(batches, batch, cancellationToken);
        var now = time.GetUtcNow();
        return new JsonBody(json => OpenAIJson.WriteBatch(json, batch, now, lanes, results));
    }

    private async Task<JsonBody> CancelAsync(string id, Caller caller, CancellationToken cancellationToken)
    {
        var batch = await batches.GetAsync(caller, id, BatchDoor.OpenAI, cancellationToken);
        return Answer(await batches.CancelAsync(batch, cancellationToken));
    }

    private async Task<JsonBody> ResultAsync(string id, string customId, Caller caller, CancellationToken cancellationToken)
    {
        var batch = await batches.GetAsync(caller, id, BatchDoor.OpenAI, cancellationToken);
        var item = await batches.ResultAsync(batch, customId, cancellationToken);
        return new JsonBody(json =>
        {
            using var lines = new ResultLineWriter(batch.Format, batch.Id);
            WriteResult(json, lines, item);
        });
    }

    private JsonBody Answer(BatchRecord batch)
    {
        var now = time.GetUtcNow();
        return new JsonBody(json => OpenAIJson.WriteBatch(json, batch, now));
    }

    private async Task<JsonBody> ListAsync(Caller caller, HttpRequest request, CancellationToken cancellationToken)
    {
        var query = request.Query;
        var page = await batches.ListAsync(caller, BatchDoor.OpenAI,
            new PageRequest(Fields.Int(query, "limit", 20, 1, 100), Fields.Text(query, "after")), cancellationToken);
        var now = time.GetUtcNow();
        return new JsonBody(json => OpenAIJson.WriteList(json, page, b => b.Id, (w, b) => OpenAIJson.WriteBatch(w, b, now)));
    }

    private async Task<JsonBody> CreateAsync(Caller caller, HttpRequest request, CancellationToken cancellationToken)
    {
        var idempotencyKey = Fields.IdempotencyKey(request);
        using var body = await bodies.ReadAsync(request, cancellationToken);
        var metadata = Fields.Metadata(body.Fields);
        var batch = new NewBatch(BatchIds.NewBatchId(), null)
        {
            Owner = caller.Owner, Metadata = metadata, IdempotencyKey = idempotencyKey, BodySha256 = body.Sha256,
        };
        return Answer(body.HasRequests
            ? await CreateInlineAsync(body, caller, batch with { Door = BatchDoor.Inline }, cancellationToken)
            : await CreateFromFileAsync(body, caller, batch with { Door = BatchDoor.OpenAI }, cancellationToken));
    }

    private async Task<BatchRecord> CreateFromFileAsync(CreateBody body, Caller caller, NewBatch batch, CancellationToken cancellationToken)
    {
        Fields.OnlyKnown(body.Fields, "input_file_id", "endpoint", "completion_window", "metadata", "budget_usd", "output_schema", "max_invalid_attempts");
        var fileId = Fields.String(body.Fields, "input_file_id", required: true)!;
        var endpoint = Endpoint(Fields.String(body.Fields, "endpoint", required: true)!);
        // The OpenAI Batch API's completion window is the deadline; the metadata carries the mode, as its create has no field for one.
        var window = Fields.String(body.Fields, "completion_window") ?? "24h";
        var deadline = Fields.Window(window);
        string? asked = null;
        batch.Metadata?.TryGetValue(ModeKey, out asked);
        var mode = batches.ModeOf(BatchDoor.OpenAI, asked, "metadata." + ModeKey, null, endpoint, hasDeadline: true);
        var cache = batches.CacheUseOf(batch.Metadata);
        var (schema, reasks) = OutputRulesOf(body, batch.Metadata);
        var file = await files.GetInputAsync(caller, fileId, cancellationToken);
        return await batches.CreateFromFileAsync(batch with
        {
            Endpoint = endpoint, InputFileId = file.Id, BudgetNanos = Budget(body), CompletionWindow = deadline, CompletionWindowText = window, Mode = mode, Cache = cache,
            OutputSchema = schema, MaxReasks = reasks,
        }, caller, cancellationToken);
    }

    private async Task<BatchRecord> CreateInlineAsync(CreateBody body, Caller caller, NewBatch batch, CancellationToken cancellationToken)
    {
        Fields.OnlyKnown(body.Fields, InlineFields);
        var budget = Budget(body);
        var cache = batches.CacheUseOf(body.Fields);
        var (schema, reasks) = OutputRulesOf(body, batch.Metadata);
        var (deadline, window) = Fields.Deadline(body.Fields);

        var endpoint = Endpoint(Fields.String(body.Fields, "endpoint") ?? BatchEndpoints.ChatCompletions);
        var model = Fields.String(body.Fields, "model");
        var priority = Fields.String(body.Fields, "priority") is { } text
            ? Words.ParsePriority(text) ?? throw ApiException.BadRequest($"priority \"{text}\" is not one of \"low\", \"normal\", \"high\".", "priority")
            : BatchPriority.Normal;
        if (body.RequestCount == 0)
        {
            throw ApiException.BadRequest("\"requests\" is empty; a batch needs at least one request.", "requests", InputErrorCodes.EmptyFile);
        }

        var mode = batches.ModeOf(BatchDoor.Inline, Fields.String(body.Fields, "mode"), "mode", model, endpoint, hasDeadline: deadline is not null);
        using var lines = await bodies.ConvertAsync(body, "inline", endpoint, model, "The batch was not created", cancellationToken);
        return await batches.CreateAndImportAsync(batch with
        {
            Endpoint = endpoint, Model = model, Priority = priority, BudgetNanos = budget, Mode = mode, CompletionWindow = deadline, CompletionWindowText = window, Cache = cache,
            OutputSchema = schema, MaxReasks = reasks,
        }, lines.Path, endpoint, lines.Refused, caller, cancellationToken);
    }

    /// <summary>The optional <c>budget_usd</c> of a create, in billionths of a dollar.</summary>
    private static long? Budget(CreateBody body) =>
        body.Fields.TryGetValue("budget_usd", out var field) && field.ValueKind != JsonValueKind.Null
            ? field.ValueKind == JsonValueKind.Number && field.TryGetDecimal(out var usd) && Cost.BudgetFromUsd(usd) is { } nanos
                ? nanos
                : throw ApiException.BadRequest("budget_usd must be a number of US dollars, 0 or more.", "budget_usd", "invalid_budget")
            : null;

    /// <summary>
    /// What a create asks of its answers: <c>output_schema</c>, a JSON Schema every answer must fit
    /// (kept as its text), and <c>max_invalid_attempts</c> (or <c>metadata.shepherd_max_invalid_attempts</c>,
    /// for callers whose SDK sends only metadata; the field wins): how often an answer that does
    /// not fit is asked again. Each is a 400 naming the field when it is wrong.
    /// </summary>
    private static (string? Schema, int? MaxReasks) OutputRulesOf(CreateBody body, IReadOnlyDictionary<string, string>? metadata)
    {
        string? schema = null;
        if (body.Fields.TryGetValue("output_schema", out var given) && given.ValueKind != JsonValueKind.Null)
        {
            schema = given.GetRawText();
            if (OutputRules.Problem(schema) is { } problem)
            {
                throw ApiException.BadRequest($"output_schema is not a schema the answers can be checked against: {problem}", "output_schema", "invalid_output_schema");
            }
        }

        var rule = $"must be a whole number from 0 to {OutputRules.MostReasks}: how often an answer that does not fit is asked again";
        int? reasks = null;
        if (metadata is not null && metadata.TryGetValue(MaxInvalidKey, out var text))
        {
            reasks = int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var n) && n <= OutputRules.MostReasks
                ? n
                : throw ApiException.BadRequest($"metadata.{MaxInvalidKey} {rule}; got \"{text}\".", "metadata." + MaxInvalidKey, "invalid_max_invalid_attempts");
        }

        if (body.Fields.TryGetValue("max_invalid_attempts", out var max) && max.ValueKind != JsonValueKind.Null)
        {
            reasks = max.ValueKind == JsonValueKind.Number && max.TryGetInt32(out var n) && n is >= 0 and <= OutputRules.MostReasks
                ? n
                : throw ApiException.BadRequest($"max_invalid_attempts {rule}.", "max_invalid_attempts", "invalid_max_invalid_attempts");
        }

        return (schema, reasks);
    }

    /// <summary>
    /// A new inline batch of the requests of an ended batch that failed or expired (see
    /// <see cref="BatchService.RetryFailedAsync"/>), answered as the new batch.
    /// </summary>
    private async Task<JsonBody> RetryFailedAsync(string id, Caller caller, HttpRequest request, CancellationToken cancellationToken)
    {
        var original = await batches.GetAsync(caller, id, BatchDoor.OpenAI, cancellationToken);
        return Answer(await batches.RetryFailedAsync(original, () => Fields.IdempotencyKey(request), caller, cancellationToken));
    }

    private async Task<JsonBody> ResultsAsync(string id, Caller caller, HttpRequest request, CancellationToken cancellationToken)
    {
        var batch = await batches.GetAsync(caller, id, BatchDoor.OpenAI, cancellationToken);
        var offset = Fields.Long(request.Query, "offset");
        var limit = Fields.Int(request.Query, "limit", 100, 1, 1000);
        var items = new List<ItemResult>(limit + 1);
        await foreach (var item in batches.ResultsAsync(batch, offset, cancellationToken))
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
        var original = prompt is { } given ? ",\"original_prompt\":" + (given.Text is null ? "null" : "\"" + JsonEncodedText.Encode(given.Text) + "\"") : "";
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

    /// <summary>The canonical url of a known endpoint, or a 400 naming the known ones.</summary>
    internal static string Endpoint(string endpoint) =>
        BatchEndpoints.Find(endpoint) == endpoint
            ? endpoint
            : throw ApiException.BadRequest($"endpoint \"{endpoint}\" is not one of {string.Join(", ", BatchEndpoints.All)}.", "endpoint", "invalid_endpoint");
}
