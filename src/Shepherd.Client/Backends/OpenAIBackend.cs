using System.Net.Http.Headers;
using System.Runtime.CompilerServices;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Shepherd.Client.Http;

namespace Shepherd.Client.Backends;

/// <summary>
/// The OpenAI Batch API: requests travel as an uploaded JSONL file, results come back as the
/// batch's output and error files, streamed line by line.
/// </summary>
internal class OpenAIBackend(ApiPipeline pipeline, ShepherdClientOptions options) : IBatchBackend
{
    protected const string DefaultEndpoint = Requests.ChatEndpoint;
    private const string RetryOf = "retry_of";
    private const string ModeKey = "shepherd_mode";

    private const string CacheKey = "shepherd_cache";

    private const string CacheSampledKey = "shepherd_cache_sampled";

    protected ApiPipeline Pipeline => pipeline;

    protected ShepherdClientOptions Options => options;

    /// <summary>
    /// True when the server recognizes a repeated create by its idempotency key, so a create whose
    /// answer was lost may be sent again; the OpenAI API does not promise it.
    /// </summary>
    protected virtual bool HonoursIdempotencyKeys => false;

    /// <summary>True when the server takes Shepherd's own fields of a create: a budget (<c>budget_usd</c>) and a mode; the OpenAI API has neither.</summary>
    protected virtual bool IsShepherd => false;

    /// <summary>Adds <c>budget_usd</c>, <c>output_schema</c> and <c>max_invalid_attempts</c> to a create (checked first with <see cref="CheckShepherdFields"/>).</summary>
    protected void AddShepherdFields(JsonObject body, FileBatchOptions options)
    {
        ArgumentNullException.ThrowIfNull(body);
        ArgumentNullException.ThrowIfNull(options);
        CheckShepherdFields(options.BudgetUsd, null, checks: options.OutputSchema is not null || options.MaxInvalidAttempts is not null);
        if (options.BudgetUsd is { } budget)
        {
            body["budget_usd"] = budget;
        }

        if (options.OutputSchema is { } schema)
        {
            body["output_schema"] = schema.DeepClone();
        }

        if (options.MaxInvalidAttempts is { } max)
        {
            body["max_invalid_attempts"] = max;
        }
    }

    /// <summary>Refuses, before anything is sent, a budget, a mode or a use of the answer cache the server would not keep, or a budget below 0.</summary>
    protected void CheckShepherdFields(decimal? budgetUsd, BatchMode? mode, bool? cache = null, bool? cacheSampled = null, bool checks = false)
    {
        if (checks && !IsShepherd)
        {
            throw new ArgumentException("The OpenAI Batch API checks no answer against a schema; output_schema and max_invalid_attempts are a Shepherd server's.", nameof(budgetUsd));
        }

        if (mode is not null && !IsShepherd)
        {
            throw new ArgumentException("The OpenAI Batch API takes no mode; modes are a Shepherd server's.", nameof(mode));
        }

        if ((cache ?? cacheSampled) is not null && !IsShepherd)
        {
            throw new ArgumentException("The OpenAI Batch API keeps no answer cache; the cache is a Shepherd server's.", nameof(cache));
        }

        if (budgetUsd is not { } budget)
        {
            return;
        }

        if (!IsShepherd)
        {
            throw new ArgumentException("The OpenAI Batch API keeps no budget; budgets are kept by a Shepherd server.", nameof(budgetUsd));
        }

        ArgumentOutOfRangeException.ThrowIfNegative(budget, nameof(budgetUsd));
    }

    public virtual async Task<Batch> CreateAsync(NewBatch batch, string idempotencyKey, CancellationToken cancellationToken)
    {
        CheckShepherdFields(batch.BudgetUsd, batch.Mode, batch.Cache, batch.CacheSampled, batch.OutputSchema is not null || batch.MaxInvalidAttempts is not null);
        var endpoint = batch.Endpoint ?? DefaultEndpoint;
        var path = Path.Combine(Path.GetTempPath(), "shepherd-client-" + Guid.NewGuid().ToString("N") + ".jsonl");
        try
        {
            await using (var file = new FileStream(path, FileMode.CreateNew, FileAccess.Write, FileShare.None, 64 * 1024, FileOptions.Asynchronous))
            {
                foreach (var item in batch.Requests)
                {
                    var line = new JsonObject
                    {
                        ["custom_id"] = item.CustomId,
                        ["method"] = "POST",
                        ["url"] = endpoint,
                        ["body"] = Requests.BodyOf(item, endpoint, batch.Model),
                    };
                    await file.WriteAsync(Encoding.UTF8.GetBytes(line.ToJsonString() + "\n"), cancellationToken);
                }
            }

            var fileOptions = new FileBatchOptions { Endpoint = endpoint, Metadata = batch.Metadata, CompletionWindow = batch.CompletionWindow ?? Requests.DefaultWindow, BudgetUsd = batch.BudgetUsd, Mode = batch.Mode, Cache = batch.Cache, CacheSampled = batch.CacheSampled,
                OutputSchema = batch.OutputSchema, MaxInvalidAttempts = batch.MaxInvalidAttempts,
            };
            return await CreateFromFileAsync(path, fileOptions, idempotencyKey, cancellationToken);
        }
        finally
        {
            File.Delete(path);
        }
    }

    public async Task<Batch> CreateFromFileAsync(string path, FileBatchOptions options, string idempotencyKey, CancellationToken cancellationToken)
    {
        CheckShepherdFields(options.BudgetUsd, options.Mode, options.Cache, options.CacheSampled, options.OutputSchema is not null || options.MaxInvalidAttempts is not null);
        var metadata = WithShepherdFields(options.Metadata, (ModeKey, options.Mode?.ToApiName()), (CacheKey, Word(options.Cache)), (CacheSampledKey, Word(options.CacheSampled)));
        var endpoint = options.Endpoint ?? await FirstUrlAsync(path, cancellationToken);
        var file = await pipeline.SendJsonAsync(() =>
        {
            var form = new MultipartFormDataContent { { new StringContent("batch"), "purpose" } };
            var content = new StreamContent(File.OpenRead(path));
            content.Headers.ContentType = new MediaTypeHeaderValue("application/jsonl");
            form.Add(content, "file", Path.GetFileName(path));
            return pipeline.Request(HttpMethod.Post, "v1/files", form);
        }, cancellationToken);
        var body = new JsonObject
        {
            ["input_file_id"] = Wire.String(file.Json, "id"),
            ["endpoint"] = endpoint,
            ["completion_window"] = Requests.WindowText(options.CompletionWindow),
        };
        if (metadata is { Count: > 0 })
        {
            body["metadata"] = new JsonObject(metadata.Select(p => KeyValuePair.Create(p.Key, (JsonNode?)p.Value)));
        }

        AddShepherdFields(body, options);
        return await PostBatchAsync("v1/batches", body.ToJsonString(), idempotencyKey, cancellationToken);
    }

    /// <summary>
    /// The metadata of a file batch with Shepherd's own fields as a Shepherd server reads them there
    /// (<c>shepherd_mode</c>, <c>shepherd_cache</c>, <c>shepherd_cache_sampled</c>): the OpenAI
    /// Batch API, whose create this is, has no fields for them. A field left null is not added.
    /// </summary>
    private static IReadOnlyDictionary<string, string>? WithShepherdFields(IReadOnlyDictionary<string, string>? metadata, params (string Key, string? Word)[] fields)
    {
        var given = fields.Where(f => f.Word is not null).ToList();
        if (given.Count == 0)
        {
            return metadata;
        }

        var merged = new Dictionary<string, string>(metadata ?? new Dictionary<string, string>(), StringComparer.Ordinal);
        foreach (var (key, word) in given)
        {
            if (merged.TryGetValue(key, out var named) && named != word)
            {
                throw new ArgumentException($"The metadata says {key} {named}, and the option for it says {word}: give one.", nameof(metadata));
            }

            merged[key] = word!;
        }

        return merged;
    }

    /// <summary>A switch as metadata says it.</summary>
    private static string? Word(bool? value) => value switch { true => "true", false => "false", null => null };

    public Task<Batch> GetAsync(string batchId, CancellationToken cancellationToken) => GetAsync(batchId, CallKind.Repeatable, "", cancellationToken);

    public virtual async Task<Batch> WatchAsync(string batchId, TimeSpan wait, CancellationToken cancellationToken)
    {
        await Task.Delay(wait, options.TimeProvider, cancellationToken);
        return await GetAsync(batchId, CallKind.Look, "", cancellationToken);
    }

    /// <summary>Reads the batch with <paramref name="query"/> (such as <c>?wait=2</c>) added to its url.</summary>
    protected async Task<Batch> GetAsync(string batchId, CallKind kind, string query, CancellationToken cancellationToken) =>
        Wire.OpenAIBatch(await pipeline.SendJsonAsync(() => pipeline.Request(HttpMethod.Get, $"v1/batches/{Uri.EscapeDataString(batchId)}{query}"), cancellationToken, kind));

    public IAsyncEnumerable<Batch> ListAsync(CancellationToken cancellationToken) =>
        Wire.PagesAsync(pipeline, "v1/batches", "after", Wire.OpenAIBatch, cancellationToken);

    public async Task<Batch> CancelAsync(string batchId, CancellationToken cancellationToken) =>
        Wire.OpenAIBatch(await pipeline.SendJsonAsync(() => pipeline.Request(HttpMethod.Post, $"v1/batches/{Uri.EscapeDataString(batchId)}/cancel"), cancellationToken));

    /// <summary>The output file's lines, then the error file's.</summary>
    public virtual async IAsyncEnumerable<BatchResult> ResultsAsync(Batch batch, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        foreach (var fileId in new[] { batch.OutputFileId, batch.ErrorFileId })
        {
            if (fileId is null)
            {
                continue;
            }

            await foreach (var line in pipeline.GetJsonLinesAsync($"v1/files/{Uri.EscapeDataString(fileId)}/content", cancellationToken))
            {
                yield return Wire.OpenAIResult(line);
            }
        }
    }

    public virtual async Task<BatchResult?> ResultAsync(Batch batch, string customId, CancellationToken cancellationToken)
    {
        await foreach (var result in ResultsAsync(batch, cancellationToken))
        {
            if (result.CustomId == customId)
            {
                return result;
            }
        }

        return null;
    }

    /// <summary>
    /// The failed lines of the batch's input file, uploaded again as a new batch. The API keeps no
    /// idempotency keys, so a retry made before is found among the batches created since, by its
    /// metadata <c>retry_of</c>.
    /// </summary>
    public virtual async Task<Batch?> RetryFailedAsync(Batch batch, string idempotencyKey, CancellationToken cancellationToken)
    {
        if (await EarlierRetryAsync(batch, cancellationToken) is { } earlier)
        {
            return earlier;
        }

        var failed = new HashSet<string>(StringComparer.Ordinal);
        await foreach (var result in ResultsAsync(batch, cancellationToken))
        {
            if (result.Status is ResultStatus.Failed or ResultStatus.Expired)
            {
                failed.Add(result.CustomId);
            }
        }

        if (failed.Count == 0 || batch.InputFileId is null)
        {
            return null;
        }

        var path = Path.Combine(Path.GetTempPath(), "shepherd-retry-" + Guid.NewGuid().ToString("N") + ".jsonl");
        try
        {
            await using (var file = new FileStream(path, FileMode.CreateNew, FileAccess.Write, FileShare.None, 64 * 1024, FileOptions.Asynchronous))
            {
                await foreach (var line in pipeline.GetJsonLinesAsync($"v1/files/{Uri.EscapeDataString(batch.InputFileId)}/content", cancellationToken))
                {
                    if (Wire.String(line, "custom_id") is { } id && failed.Contains(id))
                    {
                        await file.WriteAsync(Encoding.UTF8.GetBytes(line.GetRawText() + "\n"), cancellationToken);
                    }
                }
            }

            var metadata = new Dictionary<string, string>(batch.Metadata, StringComparer.Ordinal) { [RetryOf] = batch.Id };
            return await CreateFromFileAsync(path, new FileBatchOptions { Endpoint = batch.Endpoint, Metadata = metadata }, idempotencyKey, cancellationToken);
        }
        finally
        {
            File.Delete(path);
        }
    }

    /// <summary>The newest batch whose <c>retry_of</c> names <paramref name="batch"/>, among those listed before it (newest first).</summary>
    private async Task<Batch?> EarlierRetryAsync(Batch batch, CancellationToken cancellationToken)
    {
        await foreach (var listed in ListAsync(cancellationToken))
        {
            if (listed.Id == batch.Id || listed.CreatedAt < batch.CreatedAt)
            {
                break;
            }

            if (listed.Metadata.TryGetValue(RetryOf, out var of) && of == batch.Id)
            {
                return listed;
            }
        }

        return null;
    }

    /// <summary>The OpenAI API has no calls that wait: refused, before anything is sent.</summary>
    public virtual Task<string> StartCallAsync(string url, JsonObject body, TimeSpan deadline, CancellationToken cancellationToken) =>
        Task.FromException<string>(Calls.Unsupported("The OpenAI API"));

    /// <summary>The OpenAI API has no calls that wait: refused, before anything is sent.</summary>
    public virtual Task<CallAnswer?> LookAtCallAsync(string callId, CallKind kind, CancellationToken cancellationToken) =>
        Task.FromException<CallAnswer?>(Calls.Unsupported("The OpenAI API"));

    protected async Task<Batch> PostBatchAsync(string path, string json, string idempotencyKey, CancellationToken cancellationToken) =>
        Wire.OpenAIBatch(await pipeline.SendJsonAsync(
            () => pipeline.Request(HttpMethod.Post, path, new StringContent(json, Encoding.UTF8, "application/json"), idempotencyKey),
            cancellationToken,
            HonoursIdempotencyKeys ? CallKind.Repeatable : CallKind.Once));

    private static async Task<string> FirstUrlAsync(string path, CancellationToken cancellationToken)
    {
        using var reader = new StreamReader(path);
        while (await reader.ReadLineAsync(cancellationToken) is { } line)
        {
            if (!string.IsNullOrWhiteSpace(line))
            {
                using var document = JsonDocument.Parse(line);
                // An Anthropic line (custom_id, params) names no url: it goes to the Messages API.
                return Wire.String(document.RootElement, "url")
                    ?? (document.RootElement.ValueKind == JsonValueKind.Object && document.RootElement.TryGetProperty("params", out _) ? "/v1/messages" : DefaultEndpoint);
            }
        }

        throw new ArgumentException($"{path} holds no request.", nameof(path));
    }
}
