using System.Net;
using System.Net.Http.Headers;
using System.Runtime.CompilerServices;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Shepherd.Client.Http;

namespace Shepherd.Client.Backends;

/// <summary>
/// The Anthropic Message Batches API: requests travel inline in the create (there is no file
/// upload), results come back as one JSONL download once the batch has ended. It keeps no
/// metadata, no completion window other than 24 hours, and no request bodies a retry could use.
/// </summary>
internal sealed class AnthropicBackend(ApiPipeline pipeline, ShepherdClientOptions options) : IBatchBackend
{
    private const string Endpoint = "/v1/messages";
    private const string Batches = "v1/messages/batches";
    /// <summary>The request body is sent in pieces of about this size, not held whole.</summary>
    private const int FlushBytes = 64 * 1024;

    /// <summary>The options the client was made with (its <see cref="ShepherdClientOptions.Api"/> is Anthropic).</summary>
    public ShepherdClientOptions Options => options;

    public Task<Batch> CreateAsync(NewBatch batch, string idempotencyKey, CancellationToken cancellationToken)
    {
        Supported(batch.Endpoint, batch.Metadata, batch.CompletionWindow, batch.BudgetUsd, batch.Mode, batch.Cache ?? batch.CacheSampled, batch.OutputSchema is not null || batch.MaxInvalidAttempts is not null, nameof(batch));
        var requests = batch.Requests.Select(item => new MessageRequest(item.CustomId, json => Requests.BodyOf(item, Endpoint, batch.Model).WriteTo(json)));
        return PostRequestsAsync((json, ct) => WriteRequestsAsync(json, Async(requests), ct), idempotencyKey, cancellationToken);
    }

    /// <summary>The requests of a batch in memory, as the writer of a file's requests takes them.</summary>
    private static async IAsyncEnumerable<MessageRequest> Async(IEnumerable<MessageRequest> requests)
    {
        foreach (var request in requests)
        {
            yield return request;
        }
    }

    /// <summary>
    /// Reads the file twice, one line at a time: once to check every line before anything is sent
    /// (a bad line fails here, with its number, rather than mid-upload where it would look like a
    /// dropped connection and be retried), then again into the request body as it is sent.
    /// </summary>
    public async Task<Batch> CreateFromFileAsync(string path, FileBatchOptions options, string idempotencyKey, CancellationToken cancellationToken)
    {
        Supported(options.Endpoint, options.Metadata, options.CompletionWindow, options.BudgetUsd, options.Mode, options.Cache ?? options.CacheSampled, options.OutputSchema is not null || options.MaxInvalidAttempts is not null, nameof(options));
        var requests = 0L;
        await foreach (var (number, line) in FileLinesAsync(path, cancellationToken))
        {
            using (line)
            {
                _ = ParamsOf(line.RootElement, path, number);
                requests++;
            }
        }

        if (requests == 0)
        {
            throw new ArgumentException($"{path} holds no request.", nameof(path));
        }

        return await PostRequestsAsync((json, ct) => WriteRequestsAsync(json, FileRequestsAsync(path, ct), ct), idempotencyKey, cancellationToken);
    }

    public Task<Batch> GetAsync(string batchId, CancellationToken cancellationToken) => GetAsync(batchId, CallKind.Repeatable, cancellationToken);

    public async Task<Batch> WatchAsync(string batchId, TimeSpan wait, CancellationToken cancellationToken)
    {
        await Task.Delay(wait, options.TimeProvider, cancellationToken);
        return await GetAsync(batchId, CallKind.Look, cancellationToken);
    }

    private async Task<Batch> GetAsync(string batchId, CallKind kind, CancellationToken cancellationToken) =>
        Wire.AnthropicBatch(await pipeline.SendJsonAsync(() => pipeline.Request(HttpMethod.Get, PathOf(batchId)), cancellationToken, kind));

    public IAsyncEnumerable<Batch> ListAsync(CancellationToken cancellationToken) =>
        Wire.PagesAsync(pipeline, Batches, "after_id", Wire.AnthropicBatch, cancellationToken);

    public async Task<Batch> CancelAsync(string batchId, CancellationToken cancellationToken) =>
        Wire.AnthropicBatch(await pipeline.SendJsonAsync(() => pipeline.Request(HttpMethod.Post, PathOf(batchId) + "/cancel"), cancellationToken));

    /// <summary>The result lines, streamed (the API serves them once the batch has ended).</summary>
    public async IAsyncEnumerable<BatchResult> ResultsAsync(Batch batch, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        await foreach (var line in pipeline.GetJsonLinesAsync(PathOf(batch.Id) + "/results", cancellationToken))
        {
            yield return Wire.AnthropicResult(line);
        }
    }

    /// <summary>Anthropic serves no single result: the results are scanned up to the one asked for.</summary>
    public async Task<BatchResult?> ResultAsync(Batch batch, string customId, CancellationToken cancellationToken)
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

    /// <summary>Nothing to retry is null, as on every backend; something to retry cannot be rebuilt here.</summary>
    public Task<Batch?> RetryFailedAsync(Batch batch, string idempotencyKey, CancellationToken cancellationToken) =>
        batch.Failed - batch.Cancelled == 0
            ? Task.FromResult<Batch?>(null)
            : Task.FromException<Batch?>(new NotSupportedException(
                $"The Anthropic Message Batches API keeps no request bodies a client could fetch, so the failed requests of {batch.Id} cannot be rebuilt from the batch alone. "
                + "Retrying needs the original requests: create a new batch of those whose custom ids did not succeed (GetResultsAsync lists them)."));

    /// <summary>The Anthropic API has no calls that wait: refused, before anything is sent.</summary>
    public Task<string> StartCallAsync(string url, JsonObject body, TimeSpan deadline, CancellationToken cancellationToken) =>
        Task.FromException<string>(Calls.Unsupported("The Anthropic API"));

    /// <summary>The Anthropic API has no calls that wait: refused, before anything is sent.</summary>
    public Task<CallAnswer?> LookAtCallAsync(string callId, CallKind kind, CancellationToken cancellationToken) =>
        Task.FromException<CallAnswer?>(Calls.Unsupported("The Anthropic API"));

    private static string PathOf(string batchId) => $"{Batches}/{Uri.EscapeDataString(batchId)}";

    /// <summary>Refuses what the API cannot keep, rather than dropping it unseen.</summary>
    private static void Supported(string? endpoint, IReadOnlyDictionary<string, string>? metadata, TimeSpan? window, decimal? budget, BatchMode? mode, bool? cache, bool checks, string name)
    {
        if (checks)
        {
            throw new ArgumentException("The Anthropic Message Batches API checks no answer against a schema; output_schema and max_invalid_attempts are a Shepherd server's, on its OpenAI door.", name);
        }

        if (cache is not null)
        {
            throw new ArgumentException("The Anthropic Message Batches API has no field for the answer cache; a Shepherd server's Anthropic door uses the cache as its configuration says.", name);
        }

        if (mode is not null)
        {
            throw new ArgumentException("The Anthropic Message Batches API takes no mode; a Shepherd server's Anthropic door runs batches in the mode its configuration gives that door.", name);
        }

        if (budget is not null)
        {
            throw new ArgumentException("The Anthropic Message Batches API keeps no budget; budgets are kept by a Shepherd server.", name);
        }

        if (endpoint is not null && endpoint != Endpoint)
        {
            throw new ArgumentException($"The Anthropic Message Batches API sends every request to {Endpoint}, not {endpoint}.", name);
        }

        if (metadata is { Count: > 0 })
        {
            throw new ArgumentException("The Anthropic Message Batches API keeps no metadata; leave it out.", name);
        }

        if (window is { } given && given != Requests.DefaultWindow)
        {
            throw new ArgumentException($"The Anthropic Message Batches API's completion window is always {Requests.WindowText(Requests.DefaultWindow)}, not {Requests.WindowText(given)}.", name);
        }
    }

    private async Task<Batch> PostRequestsAsync(Func<Utf8JsonWriter, CancellationToken, Task> write, string idempotencyKey, CancellationToken cancellationToken) =>
        // The Anthropic API does not promise to honour the idempotency key: a create is repeated only when surely not taken.
        Wire.AnthropicBatch(await pipeline.SendJsonAsync(() => pipeline.Request(HttpMethod.Post, Batches, new WrittenJsonContent(write), idempotencyKey), cancellationToken, CallKind.Once));

    /// <summary>Writes <c>{"requests":[{"custom_id","params"},…]}</c>, flushing as it goes.</summary>
    private static async Task WriteRequestsAsync(Utf8JsonWriter json, IAsyncEnumerable<MessageRequest> requests, CancellationToken cancellationToken)
    {
        json.WriteStartObject();
        json.WriteStartArray("requests");
        await foreach (var request in requests.WithCancellation(cancellationToken))
        {
            json.WriteStartObject();
            json.WriteString("custom_id", request.CustomId);
            json.WritePropertyName("params");
            request.WriteParams(json);
            json.WriteEndObject();
            if (json.BytesPending >= FlushBytes)
            {
                await json.FlushAsync(cancellationToken);
            }
        }

        json.WriteEndArray();
        json.WriteEndObject();
    }

    /// <summary>The file's requests as the create wants them; each line's document lives until its request is written.</summary>
    private static async IAsyncEnumerable<MessageRequest> FileRequestsAsync(string path, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        await foreach (var (number, line) in FileLinesAsync(path, cancellationToken))
        {
            using (line)
            {
                var parameters = ParamsOf(line.RootElement, path, number);
                yield return new MessageRequest(Wire.String(line.RootElement, "custom_id")!, parameters.WriteTo);
            }
        }
    }

    /// <summary>The non-blank lines of a JSONL file with their 1-based numbers; the caller disposes each document.</summary>
    private static async IAsyncEnumerable<(long Number, JsonDocument Line)> FileLinesAsync(string path, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        await using var file = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 64 * 1024, FileOptions.Asynchronous | FileOptions.SequentialScan);
        using var reader = new StreamReader(file, Encoding.UTF8);
        var number = 0L;
        while (await reader.ReadLineAsync(cancellationToken) is { } text)
        {
            number++;
            if (string.IsNullOrWhiteSpace(text))
            {
                continue;
            }

            JsonDocument line;
            try
            {
                line = JsonDocument.Parse(text);
            }
            catch (JsonException ex)
            {
                throw new ArgumentException($"{path} line {number} is not JSON: {ex.Message}", nameof(path), ex);
            }

            yield return (number, line);
        }
    }

    /// <summary>
    /// The Messages body of a file line: <c>params</c> of an Anthropic line
    /// (<c>{"custom_id","params"}</c>), or <c>body</c> of an OpenAI one
    /// (<c>{"custom_id","method","url","body"}</c>) whose url is <c>/v1/messages</c>.
    /// </summary>
    private static JsonElement ParamsOf(JsonElement line, string path, long number)
    {
        string Where() => $"{path} line {number}";
        if (line.ValueKind != JsonValueKind.Object)
        {
            throw new ArgumentException($"{Where()} is not a JSON object.", nameof(path));
        }

        if (Wire.String(line, "custom_id") is not { Length: > 0 })
        {
            throw new ArgumentException($"{Where()} has no \"custom_id\".", nameof(path));
        }

        if (line.TryGetProperty("params", out var parameters) && parameters.ValueKind == JsonValueKind.Object)
        {
            return parameters;
        }

        if (line.TryGetProperty("body", out var body) && body.ValueKind == JsonValueKind.Object)
        {
            var url = Wire.String(line, "url");
            if (url is not null && url != Endpoint)
            {
                throw new ArgumentException($"{Where()} is for {url}; the Anthropic Message Batches API only sends to {Endpoint}.", nameof(path));
            }

            return body;
        }

        throw new ArgumentException($"{Where()} needs \"params\" (an Anthropic line) or \"body\" (an OpenAI line), an object.", nameof(path));
    }

    /// <summary>One request of a create: its custom id, and how to write its Messages body.</summary>
    private sealed record MessageRequest(string CustomId, Action<Utf8JsonWriter> WriteParams);

    /// <summary>A JSON body written straight to the connection as it is sent, never held whole.</summary>
    private sealed class WrittenJsonContent : HttpContent
    {
        private readonly Func<Utf8JsonWriter, CancellationToken, Task> _write;

        public WrittenJsonContent(Func<Utf8JsonWriter, CancellationToken, Task> write)
        {
            _write = write;
            Headers.ContentType = new MediaTypeHeaderValue("application/json") { CharSet = "utf-8" };
        }

        protected override Task SerializeToStreamAsync(Stream stream, TransportContext? context) =>
            SerializeToStreamAsync(stream, context, CancellationToken.None);

        protected override async Task SerializeToStreamAsync(Stream stream, TransportContext? context, CancellationToken cancellationToken)
        {
            await using var json = new Utf8JsonWriter(stream);
            await _write(json, cancellationToken);
            await json.FlushAsync(cancellationToken);
        }

        protected override bool TryComputeLength(out long length)
        {
            length = 0;
            return false;
        }
    }
}
