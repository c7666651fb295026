using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Http.Headers;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Text.Json;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Shepherd.Client.Http;

/// <summary>
/// Sends the client's calls: authenticated, each try bounded by the request timeout, transient
/// failures retried with jittered exponential backoff (a <c>retry-after</c> from the server
/// wins when longer), behind a circuit breaker. Errors become <see cref="ShepherdApiException"/>.
/// </summary>
internal sealed partial class ApiPipeline : IDisposable
{
    /// <summary>One activity per call the caller made (its tries inside it), for tracing: <c>Shepherd.Client</c>.</summary>
    public static readonly ActivitySource Activities = new(ShepherdClient.ActivitySourceName);

    private const string ConnectionRefused = "connection_refused";

    /// <summary>The header a Shepherd server names a call that could wait in, on its answer.</summary>
    public const string CallIdHeader = "x-shepherd-call-id";

    private readonly ShepherdClientOptions _options;
    private readonly HttpClient _http;
    private readonly bool _ownsHttp;
    private readonly CircuitBreaker _breaker;
    private readonly ILogger _log;
    private volatile bool _disposed;

    public ApiPipeline(ShepherdClientOptions options, HttpClient? http)
    {
        _options = options;
        _ownsHttp = http is null;
        _http = http ?? new HttpClient(new SocketsHttpHandler { PooledConnectionLifetime = TimeSpan.FromMinutes(5) }) { Timeout = Timeout.InfiniteTimeSpan };
        _breaker = new CircuitBreaker(options.BreakerFailures, options.BreakerDuration, options.TimeProvider);
        _log = options.LoggerFactory?.CreateLogger("Shepherd.Client") ?? NullLogger.Instance;
    }

    /// <summary>
    /// Sends the request <paramref name="build"/> makes (once per try) and returns the successful
    /// response, which the caller disposes; with <paramref name="streamed"/> its body is not buffered.
    /// <paramref name="kind"/> says how the call is retried and how it stands with the circuit breaker.
    /// </summary>
    public async Task<HttpResponseMessage> SendAsync(Func<HttpRequestMessage> build, CancellationToken cancellationToken, bool streamed = false, CallKind kind = CallKind.Repeatable)
    {
        ObjectDisposedException.ThrowIf(_disposed, typeof(ShepherdClient));
        if (kind != CallKind.Look)
        {
            // Once per call, not per try: the breaker counts the calls the caller made.
            _breaker.Enter();
        }

        using var activity = Activities.StartActivity("shepherd.client.call", ActivityKind.Client);
        try
        {
            var response = await SendTriesAsync(build, streamed, kind, activity, cancellationToken);
            activity?.SetTag("http.response.status_code", (int)response.StatusCode);
            return response;
        }
        catch (ShepherdApiException ex)
        {
            activity?.SetStatus(ActivityStatusCode.Error, ex.Message);
            activity?.SetTag("http.response.status_code", ex.StatusCode);
            activity?.SetTag("error.type", ex.ErrorCode);
            throw;
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested && kind != CallKind.Look)
        {
            // A call given up by its caller says nothing of the server; were it the breaker's trial, another may go.
            _breaker.Abandoned();
            throw;
        }
    }

    private async Task<HttpResponseMessage> SendTriesAsync(Func<HttpRequestMessage> build, bool streamed, CallKind kind, Activity? activity, CancellationToken cancellationToken)
    {
        for (var attempt = 0; ; attempt++)
        {
            var (response, failure, retryAfter) = await TryAsync(build, streamed, activity, cancellationToken);
            if (response is not null)
            {
                _breaker.Succeeded();
                return response;
            }

            if (failure.StatusCode is { } status && (!IsTransient((HttpStatusCode)status) || failure.CallId is not null))
            {
                // The server is alive and said no (or gave a call's kept answer): retrying would not change its mind.
                _breaker.Succeeded();
                throw failure;
            }

            if (attempt >= RetriesOf(kind, failure))
            {
                // A rate limit is an answer from a live server, and a look's failure is its wait's to ride out.
                if (kind != CallKind.Look && failure.StatusCode != (int)HttpStatusCode.TooManyRequests)
                {
                    _breaker.Failed(failure.Message);
                }

                throw failure;
            }

            var delay = Backoff(attempt, retryAfter);
            activity?.SetTag("shepherd.retries", attempt + 1);
            LogRetry(_log, failure.Message, attempt + 1, delay.TotalSeconds);
            await Task.Delay(delay, _options.TimeProvider, cancellationToken);
        }
    }

    /// <summary>Sends and parses the JSON answer.</summary>
    public async Task<JsonAnswer> SendJsonAsync(Func<HttpRequestMessage> build, CancellationToken cancellationToken, CallKind kind = CallKind.Repeatable)
    {
        using var response = await SendAsync(build, cancellationToken, kind: kind);
        return await ReadJsonAsync(response, cancellationToken);
    }

    /// <summary>Parses the JSON answer of <paramref name="response"/>, which the caller disposes.</summary>
    public static async Task<JsonAnswer> ReadJsonAsync(HttpResponseMessage response, CancellationToken cancellationToken)
    {
        await using var body = await response.Content.ReadAsStreamAsync(cancellationToken);
        using var document = await JsonDocument.ParseAsync(body, default, cancellationToken);
        return new JsonAnswer(document.RootElement.Clone(), ApiResponse.Of(response));
    }

    /// <summary>A request to <paramref name="path"/> (relative to the base url, such as <c>v1/batches</c>).</summary>
    public HttpRequestMessage Request(HttpMethod method, string path, HttpContent? content = null, string? idempotencyKey = null)
    {
        var request = new HttpRequestMessage(method, new Uri(_options.BaseUrl, path)) { Content = content };
        if (idempotencyKey is not null)
        {
            request.Headers.TryAddWithoutValidation("Idempotency-Key", idempotencyKey);
        }

        return request;
    }

    public void Dispose()
    {
        _disposed = true;
        if (_ownsHttp)
        {
            _http.Dispose();
        }
    }

    private void Authorize(HttpRequestMessage request)
    {
        if (_options.Api == BatchApi.Anthropic)
        {
            // Anthropic's own header; a Shepherd server accepts it as well.
            request.Headers.TryAddWithoutValidation("anthropic-version", "2023-06-01");
            if (_options.ApiKey is { Length: > 0 } anthropicKey)
            {
                request.Headers.TryAddWithoutValidation("x-api-key", anthropicKey);
            }
        }
        else if (_options.ApiKey is { Length: > 0 } key)
        {
            request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", key);
        }
    }

    /// <summary>One try: the successful response, or why there was none (and the server's <c>retry-after</c>).</summary>
    private async Task<(HttpResponseMessage? Response, ShepherdApiException Failure, TimeSpan? RetryAfter)> TryAsync(Func<HttpRequestMessage> build, bool streamed, Activity? activity, CancellationToken cancellationToken)
    {
        using var request = build();
        Authorize(request);
        if (activity is { } traced)
        {
            traced.DisplayName = $"{request.Method} {request.RequestUri?.AbsolutePath}";
            traced.SetTag("http.request.method", request.Method.Method);
            traced.SetTag("url.full", request.RequestUri?.GetLeftPart(UriPartial.Path));
        }

        using var timeout = new CancellationTokenSource(_options.RequestTimeout, _options.TimeProvider);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, timeout.Token);
        var call = $"{request.Method} {request.RequestUri?.AbsolutePath}";
        try
        {
            var response = await _http.SendAsync(request, streamed ? HttpCompletionOption.ResponseHeadersRead : HttpCompletionOption.ResponseContentRead, linked.Token);
            if (response.IsSuccessStatusCode)
            {
                return (response, null!, null);
            }

            using (response)
            {
                return (null, await ErrorOfAsync(request, response, cancellationToken), RetryAfter(response));
            }
        }
        catch (HttpRequestException ex) when (ex.InnerException is SocketException { SocketErrorCode: SocketError.ConnectionRefused })
        {
            return (null, new ShepherdApiException($"{call}: nothing listens at {request.RequestUri?.Authority} (connection refused).", null, ConnectionRefused, null, ex), null);
        }
        catch (HttpRequestException ex)
        {
            return (null, new ShepherdApiException($"{call}: no answer ({ex.Message}).", null, "connection_failed", null, ex), null);
        }
        catch (OperationCanceledException ex) when (timeout.IsCancellationRequested && !cancellationToken.IsCancellationRequested)
        {
            return (null, new ShepherdApiException($"{call}: no answer within {_options.RequestTimeout.TotalSeconds:0.#} s.", null, "timeout", null, ex), null);
        }
    }

    /// <summary>
    /// Retries a failure of a call of <paramref name="kind"/> may have. A refused connection is
    /// retried once: nothing listens, and an answer would come at once if something did, so a
    /// one-off call fails within a retry's delay (a wait rides out a restart by itself).
    /// </summary>
    private int RetriesOf(CallKind kind, ShepherdApiException failure) => kind switch
    {
        CallKind.Look => 0,
        CallKind.Once when failure.StatusCode is not (429 or 503 or 529) => 0,
        _ when failure.ErrorCode == ConnectionRefused => Math.Min(1, _options.MaxRetries),
        _ => _options.MaxRetries,
    };

    /// <summary>Full jitter over an exponential ceiling, but never less than the server asked for.</summary>
    internal TimeSpan Backoff(int attempt, TimeSpan? retryAfter)
    {
        var ceiling = Math.Min(_options.RetryBaseDelay.TotalMilliseconds * Math.Pow(2, attempt), _options.RetryMaxDelay.TotalMilliseconds);
        var jittered = TimeSpan.FromMilliseconds(ceiling * (0.5 + (RandomNumberGenerator.GetInt32(0, 1001) / 2000.0)));
        return retryAfter is { } asked && asked > jittered ? (asked < _options.RetryMaxDelay ? asked : _options.RetryMaxDelay) : jittered;
    }

    internal static bool IsTransient(HttpStatusCode status) =>
        status is HttpStatusCode.RequestTimeout or HttpStatusCode.TooManyRequests
        || (int)status == 425
        || (int)status is 500 or 502 or 503 or 504 or 529;

    /// <summary>How long the server asks to be left alone: <c>retry-after-ms</c>, else <c>Retry-After</c> (seconds or a date); null when it does not say.</summary>
    internal TimeSpan? RetryAfter(HttpResponseMessage response)
    {
        if (response.Headers.TryGetValues("retry-after-ms", out var ms)
            && double.TryParse(ms.FirstOrDefault(), NumberStyles.Float, CultureInfo.InvariantCulture, out var milliseconds) && milliseconds >= 0)
        {
            return TimeSpan.FromMilliseconds(milliseconds);
        }

        return response.Headers.RetryAfter switch
        {
            { Delta: { } delta } => delta,
            { Date: { } date } => date - _options.TimeProvider.GetUtcNow() is var wait && wait > TimeSpan.Zero ? wait : TimeSpan.Zero,
            _ => null,
        };
    }

    private static async Task<ShepherdApiException> ErrorOfAsync(HttpRequestMessage request, HttpResponseMessage response, CancellationToken cancellationToken)
    {
        var status = (int)response.StatusCode;
        var text = await response.Content.ReadAsStringAsync(cancellationToken);
        string? message = null, code = null, param = null;
        try
        {
            using var document = JsonDocument.Parse(text);
            if (document.RootElement.TryGetProperty("error", out var error) && error.ValueKind == JsonValueKind.Object)
            {
                message = Text(error, "message");
                code = Text(error, "code") ?? Text(error, "type");
                param = Text(error, "param");
            }
        }
        catch (JsonException)
        {
            // Not a JSON envelope: the text itself says what went wrong.
        }

        message ??= text.Length > 300 ? text[..300] : text;
        return new ShepherdApiException($"{request.Method} {request.RequestUri?.AbsolutePath} answered {status}: {message}", status, code, param)
        {
            RequestId = ApiResponse.RequestIdOf(response.Headers),
            CallId = response.Headers.TryGetValues(CallIdHeader, out var ids) ? ids.FirstOrDefault() : null,
        };
    }

    private static string? Text(JsonElement element, string name) =>
        element.TryGetProperty(name, out var value) && value.ValueKind == JsonValueKind.String ? value.GetString() : null;

    [LoggerMessage(Level = LogLevel.Information, Message = "{Failure} Try {Retry} again in {Seconds:0.##} s.")]
    private static partial void LogRetry(ILogger logger, string failure, int retry, double seconds);
}

/// <summary>How a call is retried, and how it stands with the circuit breaker.</summary>
internal enum CallKind
{
    /// <summary>Retried on transient failures; held back by an open breaker, and counted by it when it fails.</summary>
    Repeatable,

    /// <summary>
    /// A create the server would not recognize again: retried only after answers that say it was
    /// not taken (429, 503, 529).
    /// </summary>
    Once,

    /// <summary>
    /// A look at a batch while waiting for it: tried once, neither held back by the breaker nor
    /// counted by it (the wait rides out an outage by itself, and is never refused by a breaker
    /// its own looks would have opened); a success closes the breaker.
    /// </summary>
    Look,
}
