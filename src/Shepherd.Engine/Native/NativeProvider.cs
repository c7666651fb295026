using System.Globalization;
using System.Net.Http.Headers;
using System.Runtime.CompilerServices;
using System.Text;
using System.Text.Json;
using Shepherd.Engine.Formats;
using Shepherd.Engine.Upstreams;

namespace Shepherd.Engine.Native;

/// <summary>How one line of a provider's results ends for its item.</summary>
internal enum LineFate
{
    /// <summary>Answered with success.</summary>
    Succeeded,

    /// <summary>Failed for a reason another attempt would not change (a 4xx).</summary>
    Permanent,

    /// <summary>Failed for a reason another attempt may not meet (429, 5xx, 529, timeouts).</summary>
    Transient,

    /// <summary>The provider batch was cancelled before the line ran.</summary>
    Cancelled,

    /// <summary>The provider batch's window ended before the line ran.</summary>
    Expired,
}

/// <summary>One line of a provider batch's results, by the item it belongs to.</summary>
internal sealed record NativeLine(long ItemId, LineFate Fate, int? StatusCode, string? RequestId, byte[]? Body, string? ErrorCode, string? ErrorMessage);

/// <summary>What a provider says of its batch.</summary>
/// <param name="Ended">True once its results can be read.</param>
/// <param name="Status">The provider's own word for its state.</param>
/// <param name="OutputFileId">OpenAI: the file of successful lines.</param>
/// <param name="ErrorFileId">OpenAI: the file of failed lines.</param>
/// <param name="ResultsUrl">Anthropic: where the results are.</param>
internal sealed record ProviderState(bool Ended, string Status, string? OutputFileId, string? ErrorFileId, string? ResultsUrl);

/// <summary>A provider call answered with an error, or not at all.</summary>
public sealed class NativeBatchException : Exception
{
    /// <summary>Creates an exception with no message.</summary>
    public NativeBatchException()
    {
    }

    /// <summary>Creates an exception with a message.</summary>
    public NativeBatchException(string message)
        : base(message)
    {
    }

    /// <summary>Creates an exception with a message and its cause.</summary>
    public NativeBatchException(string message, Exception innerException)
        : base(message, innerException)
    {
    }

    /// <summary>The HTTP status the provider answered with; null when it did not answer.</summary>
    public int? StatusCode { get; init; }
}

/// <summary>
/// A provider's own batch API, as the native runner uses it: how a job's lines are written,
/// and how a job is created, polled, cancelled and its results read.
/// </summary>
internal abstract class NativeProvider(HttpClient http, UpstreamOptions options, TimeProvider time)
{
    private static readonly ProductInfoHeaderValue UserAgent = new("Shepherd", "1.0");

    public string Name => options.Name!;

    public UpstreamOptions Options => options;

    /// <summary>The most lines of one job.</summary>
    public abstract int MaxLines { get; }

    /// <summary>The most bytes of one job's upload.</summary>
    public abstract long MaxBytes { get; }

    /// <summary>What comes before the first line.</summary>
    public abstract ReadOnlySpan<byte> Opening { get; }

    /// <summary>What comes between two lines.</summary>
    public abstract ReadOnlySpan<byte> Separator { get; }

    /// <summary>What comes after the last line.</summary>
    public abstract ReadOnlySpan<byte> Closing { get; }

    /// <summary>Writes one request of a job.</summary>
    public abstract void WriteLine(Utf8JsonWriter json, string customId, string url, byte[] body);

    /// <summary>Creates the provider batch from the job written to <paramref name="content"/>; returns the provider's batch id.</summary>
    public abstract Task<string> SubmitAsync(Stream content, string endpoint, string batchId, CancellationToken cancellationToken);

    /// <summary>Asks the provider where its batch is.</summary>
    public abstract Task<ProviderState> PollAsync(string providerBatchId, CancellationToken cancellationToken);

    /// <summary>Asks the provider to cancel its batch.</summary>
    public abstract Task CancelAsync(string providerBatchId, CancellationToken cancellationToken);

    /// <summary>Streams the result lines of an ended batch.</summary>
    public abstract IAsyncEnumerable<NativeLine> ReadResultsAsync(string providerBatchId, ProviderState state, CancellationToken cancellationToken);

    /// <summary>Whether this provider runs batches of <paramref name="endpoint"/>.</summary>
    public bool Runs(string endpoint) => options.RunsBatchesAt(endpoint);

    /// <summary>The id the provider sees for an item: safe for both providers' custom id rules.</summary>
    public static string CustomIdOf(long itemId) => "i" + itemId.ToString(CultureInfo.InvariantCulture);

    /// <summary>The item of a provider custom id, or null when it is not one this runner wrote.</summary>
    public static long? ItemIdOf(string? customId) =>
        customId is ['i', .. var digits] && long.TryParse(digits, NumberStyles.None, CultureInfo.InvariantCulture, out var id) ? id : null;

    /// <summary>True for the statuses a retry may cure: 408, 409, 429, 5xx and 529.</summary>
    public static bool IsTransient(int status) => status is 408 or 409 or 429 or >= 500;

    protected Uri Url(string path)
    {
        var baseUrl = options.BaseUrl!;
        var basePath = baseUrl.AbsolutePath.TrimEnd('/');
        var full = basePath.EndsWith("/v1", StringComparison.Ordinal) && path.StartsWith("/v1/", StringComparison.Ordinal)
            ? basePath + path[3..]
            : basePath + path;
        return new UriBuilder(baseUrl) { Path = full }.Uri;
    }

    /// <summary>Sends a request with the upstream's credentials; throws unless the answer is a 2xx. The caller disposes the answer.</summary>
    protected async Task<HttpResponseMessage> SendAsync(HttpMethod method, Uri url, HttpContent? content, CancellationToken cancellationToken)
    {
        using var request = new HttpRequestMessage(method, url) { Content = content };
        request.Headers.UserAgent.Add(UserAgent);
        options.Authorize(request);

        using var timeout = new CancellationTokenSource(options.RequestTimeout, time);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, timeout.Token);
        HttpResponseMessage response;
        try
        {
            response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, linked.Token);
        }
        catch (HttpRequestException ex)
        {
            throw new NativeBatchException($"{method} {url.AbsolutePath} on {Name} failed: {ex.Message}", ex);
        }
        catch (OperationCanceledException ex) when (timeout.IsCancellationRequested && !cancellationToken.IsCancellationRequested)
        {
            throw new NativeBatchException($"{method} {url.AbsolutePath} on {Name} timed out", ex);
        }

        if (!response.IsSuccessStatusCode)
        {
            using (response)
            {
                var text = await response.Content.ReadAsStringAsync(cancellationToken);
                throw new NativeBatchException($"{method} {url.AbsolutePath} on {Name} answered HTTP {(int)response.StatusCode}: {(text.Length > 500 ? text[..500] : text)}")
                {
                    StatusCode = (int)response.StatusCode,
                };
            }
        }

        return response;
    }

    protected async Task<JsonElement> SendJsonAsync(HttpMethod method, Uri url, HttpContent? content, CancellationToken cancellationToken)
    {
        using var response = await SendAsync(method, url, content, cancellationToken);
        await using var stream = await response.Content.ReadAsStreamAsync(cancellationToken);
        using var document = await JsonDocument.ParseAsync(stream, cancellationToken: cancellationToken);
        return document.RootElement.Clone();
    }

    protected async IAsyncEnumerable<JsonElement> ReadLinesAsync(Uri url, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        using var response = await SendAsync(HttpMethod.Get, url, null, cancellationToken);
        await using var stream = await response.Content.ReadAsStreamAsync(cancellationToken);
        using var reader = new JsonlLineReader(stream, options.MaxResponseBytes);
        while (await reader.ReadAsync(cancellationToken) is var kind && kind != LineKind.End)
        {
            if (kind == LineKind.TooLong || reader.Current.Span.Trim(" \t\r"u8).IsEmpty)
            {
                continue;
            }

            JsonElement line;
            try
            {
                using var document = JsonDocument.Parse(reader.Current);
                line = document.RootElement.Clone();
            }
            catch (JsonException)
            {
                continue;
            }

            yield return line;
        }
    }

    protected static string? Text(JsonElement element, string name) =>
        element.ValueKind == JsonValueKind.Object && element.TryGetProperty(name, out var value) && value.ValueKind == JsonValueKind.String ? value.GetString() : null;

    protected static byte[] Raw(JsonElement element) => Encoding.UTF8.GetBytes(element.GetRawText());
}

/// <summary>OpenAI's files and batches: upload the lines, create a batch, read its output and error files.</summary>
internal sealed class OpenAINativeProvider(HttpClient http, UpstreamOptions options, TimeProvider time, NativeBatchOptions limits)
    : NativeProvider(http, options, time)
{
    public override int MaxLines => limits.OpenAIMaxLines;

    public override long MaxBytes => limits.OpenAIMaxBytes;

    public override ReadOnlySpan<byte> Opening => [];

    public override ReadOnlySpan<byte> Separator => "\n"u8;

    public override ReadOnlySpan<byte> Closing => "\n"u8;

    public override void WriteLine(Utf8JsonWriter json, string customId, string url, byte[] body)
    {
        json.WriteStartObject();
        json.WriteString("custom_id"u8, customId);
        json.WriteString("method"u8, "POST");
        json.WriteString("url"u8, url);
        json.WritePropertyName("body"u8);
        json.WriteRawValue(body, skipInputValidation: true);
        json.WriteEndObject();
    }

    public override async Task<string> SubmitAsync(Stream content, string endpoint, string batchId, CancellationToken cancellationToken)
    {
        using var form = new MultipartFormDataContent();
        form.Add(new StringContent("batch"), "purpose");
        var file = new StreamContent(content);
        file.Headers.ContentType = new MediaTypeHeaderValue("application/jsonl");
        form.Add(file, "file", $"shepherd-{batchId}.jsonl");
        var uploaded = await SendJsonAsync(HttpMethod.Post, Url("/v1/files"), form, cancellationToken);
        var fileId = Text(uploaded, "id") ?? throw new NativeBatchException($"The upload to {Name} answered no file id.");

        var create = JsonContent(json =>
        {
            json.WriteStartObject();
            json.WriteString("input_file_id", fileId);
            json.WriteString("endpoint", endpoint);
            json.WriteString("completion_window", "24h");
            json.WriteStartObject("metadata");
            json.WriteString("shepherd_batch_id", batchId);
            json.WriteEndObject();
            json.WriteEndObject();
        });
        var created = await SendJsonAsync(HttpMethod.Post, Url("/v1/batches"), create, cancellationToken);
        return Text(created, "id") ?? throw new NativeBatchException($"The batch create on {Name} answered no batch id.");
    }

    public override async Task<ProviderState> PollAsync(string providerBatchId, CancellationToken cancellationToken)
    {
        var batch = await SendJsonAsync(HttpMethod.Get, Url("/v1/batches/" + Uri.EscapeDataString(providerBatchId)), null, cancellationToken);
        var status = Text(batch, "status") ?? "unknown";
        return new ProviderState(status is "completed" or "failed" or "expired" or "cancelled", status, Text(batch, "output_file_id"), Text(batch, "error_file_id"), null);
    }

    public override async Task CancelAsync(string providerBatchId, CancellationToken cancellationToken)
    {
        using var _ = await SendAsync(HttpMethod.Post, Url($"/v1/batches/{Uri.EscapeDataString(providerBatchId)}/cancel"), null, cancellationToken);
    }

    public override async IAsyncEnumerable<NativeLine> ReadResultsAsync(string providerBatchId, ProviderState state, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        foreach (var fileId in new[] { state.OutputFileId, state.ErrorFileId })
        {
            if (fileId is null)
            {
                continue;
            }

            await foreach (var line in ReadLinesAsync(Url($"/v1/files/{Uri.EscapeDataString(fileId)}/content"), cancellationToken))
            {
                if (Parse(line) is { } parsed)
                {
                    yield return parsed;
                }
            }
        }
    }

    private static NativeLine? Parse(JsonElement line)
    {
        if (ItemIdOf(Text(line, "custom_id")) is not { } itemId)
        {
            return null;
        }

        if (line.TryGetProperty("response", out var response) && response.ValueKind == JsonValueKind.Object
            && response.TryGetProperty("status_code", out var code) && code.TryGetInt32(out var status))
        {
            var body = response.TryGetProperty("body", out var answer) && answer.ValueKind != JsonValueKind.Null ? Raw(answer) : null;
            var fate = status is >= 200 and < 300 ? LineFate.Succeeded : IsTransient(status) ? LineFate.Transient : LineFate.Permanent;
            return new NativeLine(itemId, fate, status, Text(response, "request_id"), body, null, null);
        }

        var error = line.TryGetProperty("error", out var e) && e.ValueKind == JsonValueKind.Object ? e : default;
        var errorCode = Text(error, "code") ?? "native_line_failed";
        var message = Text(error, "message") ?? "the provider gave no answer for this request";
        var kind = errorCode switch
        {
            "batch_cancelled" => LineFate.Cancelled,
            "batch_expired" => LineFate.Expired,
            _ => LineFate.Transient,
        };
        return new NativeLine(itemId, kind, null, null, null, errorCode, message);
    }

    private static ByteArrayContent JsonContent(Action<Utf8JsonWriter> write)
    {
        using var buffer = new MemoryStream();
        using (var json = new Utf8JsonWriter(buffer, JsonWriterExtensions.Options))
        {
            write(json);
        }

        var content = new ByteArrayContent(buffer.ToArray());
        content.Headers.ContentType = new MediaTypeHeaderValue("application/json");
        return content;
    }
}

/// <summary>Anthropic's message batches: one create with every request, then the results JSONL.</summary>
internal sealed class AnthropicNativeProvider(HttpClient http, UpstreamOptions options, TimeProvider time, NativeBatchOptions limits)
    : NativeProvider(http, options, time)
{
    public override int MaxLines => limits.AnthropicMaxRequests;

    public override long MaxBytes => limits.AnthropicMaxBytes;

    public override ReadOnlySpan<byte> Opening => "{\"requests\":["u8;

    public override ReadOnlySpan<byte> Separator => ","u8;

    public override ReadOnlySpan<byte> Closing => "]}"u8;

    public override void WriteLine(Utf8JsonWriter json, string customId, string url, byte[] body)
    {
        json.WriteStartObject();
        json.WriteString("custom_id"u8, customId);
        json.WritePropertyName("params"u8);
        json.WriteRawValue(body, skipInputValidation: true);
        json.WriteEndObject();
    }

    public override async Task<string> SubmitAsync(Stream content, string endpoint, string batchId, CancellationToken cancellationToken)
    {
        var body = new StreamContent(content);
        body.Headers.ContentType = new MediaTypeHeaderValue("application/json");
        var created = await SendJsonAsync(HttpMethod.Post, Url("/v1/messages/batches"), body, cancellationToken);
        return Text(created, "id") ?? throw new NativeBatchException($"The message batch create on {Name} answered no id.");
    }

    public override async Task<ProviderState> PollAsync(string providerBatchId, CancellationToken cancellationToken)
    {
        var batch = await SendJsonAsync(HttpMethod.Get, Url("/v1/messages/batches/" + Uri.EscapeDataString(providerBatchId)), null, cancellationToken);
        var status = Text(batch, "processing_status") ?? "unknown";
        return new ProviderState(status == "ended", status, null, null, Text(batch, "results_url"));
    }

    public override async Task CancelAsync(string providerBatchId, CancellationToken cancellationToken)
    {
        using var _ = await SendAsync(HttpMethod.Post, Url($"/v1/messages/batches/{Uri.EscapeDataString(providerBatchId)}/cancel"), null, cancellationToken);
    }

    public override async IAsyncEnumerable<NativeLine> ReadResultsAsync(string providerBatchId, ProviderState state, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        // The fixed path, as the .NET SDK reads it: a results_url of another host would take the key elsewhere.
        await foreach (var line in ReadLinesAsync(Url($"/v1/messages/batches/{Uri.EscapeDataString(providerBatchId)}/results"), cancellationToken))
        {
            if (Parse(line) is { } parsed)
            {
                yield return parsed;
            }
        }
    }

    private static NativeLine? Parse(JsonElement line)
    {
        if (ItemIdOf(Text(line, "custom_id")) is not { } itemId
            || !line.TryGetProperty("result", out var result) || result.ValueKind != JsonValueKind.Object)
        {
            return null;
        }

        switch (Text(result, "type"))
        {
            case "succeeded" when result.TryGetProperty("message", out var message):
                return new NativeLine(itemId, LineFate.Succeeded, 200, null, Raw(message), null, null);
            case "canceled":
                return new NativeLine(itemId, LineFate.Cancelled, null, null, null, "batch_cancelled", "the provider's batch was cancelled before this request ran");
            case "expired":
                return new NativeLine(itemId, LineFate.Expired, null, null, null, "batch_expired", "the provider's batch expired before this request ran");
            default:
                var envelope = result.TryGetProperty("error", out var e) && e.ValueKind == JsonValueKind.Object ? e : default;
                var error = envelope.ValueKind == JsonValueKind.Object && envelope.TryGetProperty("error", out var inner) && inner.ValueKind == JsonValueKind.Object ? inner : envelope;
                var status = Text(error, "type") switch
                {
                    "invalid_request_error" => 400,
                    "authentication_error" => 401,
                    "permission_error" => 403,
                    "not_found_error" => 404,
                    "request_too_large" => 413,
                    "rate_limit_error" => 429,
                    "overloaded_error" => 529,
                    _ => 500,
                };
                byte[] body;
                using (var buffer = new MemoryStream())
                {
                    using (var json = new Utf8JsonWriter(buffer, JsonWriterExtensions.Options))
                    {
                        json.WriteStartObject();
                        json.WriteString("type", "error");
                        json.WritePropertyName("error");
                        if (error.ValueKind == JsonValueKind.Object)
                        {
                            error.WriteTo(json);
                        }
                        else
                        {
                            json.WriteStartObject();
                            json.WriteString("type", "api_error");
                            json.WriteString("message", "the provider gave no error");
                            json.WriteEndObject();
                        }

                        json.WriteEndObject();
                    }

                    body = buffer.ToArray();
                }

                return new NativeLine(itemId, IsTransient(status) ? LineFate.Transient : LineFate.Permanent, status, Text(envelope, "request_id"), body, null, null);
        }
    }
}
