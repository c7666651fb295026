using System.Collections.Frozen;
using System.Globalization;
using System.Net.Http.Headers;
using Shepherd.Engine.Formats;

namespace Shepherd.Engine.Upstreams;

/// <summary>
/// Sends one request body, unchanged, to an upstream and reads the answer. It never retries:
/// the dispatcher decides that from the store, so a retry survives a restart.
/// </summary>
public sealed class UpstreamClient
{
    /// <summary>The name of the <see cref="HttpClient"/> this client takes from the factory.</summary>
    public const string HttpClientName = "shepherd-upstream";

    private static readonly MediaTypeHeaderValue Json = new("application/json");
    private static readonly ProductInfoHeaderValue UserAgent = new("Shepherd", "1.0");

    private readonly HttpClient _http;
    private readonly UpstreamOptions _options;
    private readonly TimeProvider _time;
    private readonly FrozenDictionary<string, Uri> _targets;

    /// <summary>Creates a client over <paramref name="httpClient"/>; the options are copied.</summary>
    public UpstreamClient(HttpClient httpClient, UpstreamOptions options, TimeProvider timeProvider)
    {
        ArgumentNullException.ThrowIfNull(httpClient);
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(timeProvider);
        _http = httpClient;
        _options = options.Validated();
        _time = timeProvider;
        _targets = BatchEndpoints.All.ToFrozenDictionary(url => url, url => Join(_options.BaseUrl!, url), StringComparer.Ordinal);
    }

    /// <summary>The dialect of this upstream.</summary>
    public UpstreamKind Kind => _options.Kind;

    /// <summary>The checked copy of the options this client was made with.</summary>
    internal UpstreamOptions Options => _options;

    /// <summary>The absolute url a batch url is sent to.</summary>
    public Uri TargetOf(string url) => _targets.TryGetValue(url, out var target)
        ? target
        : throw new ArgumentException($"'{url}' is not a batch url.", nameof(url));

    /// <summary>Sends <paramref name="body"/> to <paramref name="url"/> and returns what came back.</summary>
    public async Task<UpstreamResponse> SendAsync(string url, byte[] body, CancellationToken cancellationToken) =>
        (await ExchangeAsync(url, body, stream: false, cancellationToken)).Response;

    /// <summary>
    /// Sends a realtime call's <paramref name="body"/> to <paramref name="url"/>: the answer
    /// keeps the headers a client relies on. With <paramref name="stream"/>, a 2xx answer is
    /// returned as soon as its headers are in, with the open response whose body is still to be
    /// read (the caller disposes of it); every other answer is read whole.
    /// </summary>
    internal Task<(UpstreamResponse Response, HttpResponseMessage? Open)> CallAsync(string url, byte[] body, bool stream, CancellationToken cancellationToken) =>
        ExchangeAsync(url, body, stream, cancellationToken, keepHeaders: true);

    private async Task<(UpstreamResponse Response, HttpResponseMessage? Open)> ExchangeAsync(string url, byte[] body, bool stream, CancellationToken cancellationToken, bool keepHeaders = false)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, TargetOf(url));
        request.Content = new ByteArrayContent(body);
        request.Content.Headers.ContentType = Json;
        request.Headers.UserAgent.Add(UserAgent);
        _options.Authorize(request);

        using var timeout = new CancellationTokenSource(_options.RequestTimeout, _time);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, timeout.Token);
        HttpResponseMessage? response = null;
        try
        {
            // A stream's body is read by its caller, for as long as the caller stays: only the headers keep to the timeout.
            response = await _http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, linked.Token);
            var answer = ReadHeaders(response, keepHeaders);
            if (stream && response.IsSuccessStatusCode)
            {
                var open = response;
                response = null;
                return (answer, open);
            }

            var content = await ReadBodyAsync(response.Content, linked.Token);
            return (content is null
                ? answer with
                {
                    StatusCode = null,
                    FailureCode = FailureCodes.ResponseTooLarge,
                    FailureMessage = $"the answer (HTTP {(int)response.StatusCode}) was larger than {_options.MaxResponseBytes} bytes",
                }
                : answer with { Body = content }, null);
        }
        catch (OperationCanceledException) when (timeout.IsCancellationRequested && !cancellationToken.IsCancellationRequested)
        {
            return (new UpstreamResponse
            {
                FailureCode = FailureCodes.RequestTimeout,
                FailureMessage = $"no complete answer within {_options.RequestTimeout.TotalSeconds:0.###} s",
            }, null);
        }
        catch (HttpRequestException ex)
        {
            return (new UpstreamResponse { FailureCode = FailureCodes.ConnectionError, FailureMessage = DescribeTransportError(ex) }, null);
        }
        catch (IOException ex)
        {
            return (new UpstreamResponse { FailureCode = FailureCodes.ConnectionError, FailureMessage = ex.Message }, null);
        }
        finally
        {
            response?.Dispose();
        }
    }

    /// <summary>
    /// Asks the upstream's base url for its headers, without a key and without a body, so that
    /// nothing is billed: any HTTP answer means a connection (and TLS) can be made. Returns null
    /// then, and otherwise why it cannot: "cannot connect to host:port: connection refused", a
    /// name that does not resolve, a failed TLS handshake, or no answer within <paramref name="timeout"/>.
    /// </summary>
    public async Task<string?> CheckReachableAsync(TimeSpan timeout, CancellationToken cancellationToken)
    {
        var baseUrl = _options.BaseUrl!;
        var where = $"{baseUrl.Host}:{baseUrl.Port}";
        using var request = new HttpRequestMessage(HttpMethod.Head, baseUrl);
        request.Headers.UserAgent.Add(UserAgent);
        using var deadline = new CancellationTokenSource(timeout, _time);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, deadline.Token);
        try
        {
            using var response = await _http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, linked.Token);
            return null;
        }
        catch (OperationCanceledException) when (deadline.IsCancellationRequested && !cancellationToken.IsCancellationRequested)
        {
            return $"{where} did not answer within {timeout.TotalSeconds:0.###} s";
        }
        catch (HttpRequestException ex)
        {
            var socket = FindInner<System.Net.Sockets.SocketException>(ex);
            return (ex.HttpRequestError switch
            {
                HttpRequestError.NameResolutionError => $"cannot resolve the host name {baseUrl.Host}: {socket?.Message ?? ex.Message}",
                HttpRequestError.SecureConnectionError => $"the TLS handshake with {where} failed ({(ex.InnerException ?? ex).Message.TrimEnd('.')}); if it serves plain http, give an http:// url",
                _ when socket is not null => $"cannot connect to {where}: {DescribeSocketError(socket)}",
                _ => $"cannot connect to {where}: {(ex.InnerException ?? ex).Message}",
            }).TrimEnd('.');
        }
        catch (IOException ex)
        {
            return $"cannot connect to {where}: {ex.Message.TrimEnd('.')}";
        }
    }

    private static T? FindInner<T>(Exception ex)
        where T : Exception
    {
        for (var inner = ex.InnerException; inner is not null; inner = inner.InnerException)
        {
            if (inner is T found)
            {
                return found;
            }
        }

        return null;
    }

    private static string DescribeSocketError(System.Net.Sockets.SocketException ex) => ex.SocketErrorCode switch
    {
        System.Net.Sockets.SocketError.ConnectionRefused => "connection refused (nothing listens there)",
        System.Net.Sockets.SocketError.TimedOut => "the connection timed out",
        System.Net.Sockets.SocketError.HostUnreachable => "the host is unreachable",
        System.Net.Sockets.SocketError.NetworkUnreachable => "the network is unreachable",
        System.Net.Sockets.SocketError.ConnectionReset => "the connection was reset",
        _ => ex.Message,
    };

    private UpstreamResponse ReadHeaders(HttpResponseMessage response, bool keepHeaders)
    {
        var headers = response.Headers;
        return new UpstreamResponse
        {
            Headers = keepHeaders ? PassedOn(response) : null,
            StatusCode = (int)response.StatusCode,
            RequestId = First(headers, "x-request-id") ?? First(headers, "request-id"),
            RetryAfter = RetryAfterOf(headers),
            RateLimits = RateLimitSnapshot.Read(headers, _time.GetUtcNow()),
            ShouldRetry = First(headers, "x-should-retry") switch
            {
                "true" => true,
                "false" => false,
                _ => null,
            },
        };
    }

    private TimeSpan? RetryAfterOf(HttpResponseHeaders headers)
    {
        if (First(headers, "retry-after-ms") is { } ms
            && double.TryParse(ms, NumberStyles.Float, CultureInfo.InvariantCulture, out var milliseconds)
            && milliseconds >= 0)
        {
            return TimeSpan.FromMilliseconds(milliseconds);
        }

        if (headers.RetryAfter is { } retryAfter)
        {
            if (retryAfter.Delta is { } delta)
            {
                return delta < TimeSpan.Zero ? TimeSpan.Zero : delta;
            }

            if (retryAfter.Date is { } date)
            {
                var wait = date - _time.GetUtcNow();
                return wait < TimeSpan.Zero ? TimeSpan.Zero : wait;
            }
        }

        // Some servers send fractional seconds, which the typed header rejects.
        return First(headers, "retry-after") is { } raw
            && double.TryParse(raw, NumberStyles.Float, CultureInfo.InvariantCulture, out var seconds) && seconds >= 0
            ? TimeSpan.FromSeconds(seconds)
            : null;
    }

    private async Task<byte[]?> ReadBodyAsync(HttpContent content, CancellationToken cancellationToken)
    {
        var length = content.Headers.ContentLength;
        if (length > _options.MaxResponseBytes)
        {
            return null;
        }

        await using var stream = await content.ReadAsStreamAsync(cancellationToken);
        if (length is { } known)
        {
            // The usual answer says its length: read it straight into an array of that size.
            var body = new byte[known];
            await stream.ReadExactlyAsync(body, cancellationToken);
            return body;
        }

        var buffer = System.Buffers.ArrayPool<byte>.Shared.Rent(16 * 1024);
        try
        {
            var filled = 0;
            int read;
            while ((read = await stream.ReadAsync(buffer.AsMemory(filled), cancellationToken)) > 0)
            {
                filled += read;
                if (filled > _options.MaxResponseBytes)
                {
                    return null;
                }

                if (filled == buffer.Length)
                {
                    var larger = System.Buffers.ArrayPool<byte>.Shared.Rent(buffer.Length * 2);
                    buffer.AsSpan(0, filled).CopyTo(larger);
                    System.Buffers.ArrayPool<byte>.Shared.Return(buffer);
                    buffer = larger;
                }
            }

            return buffer.AsSpan(0, filled).ToArray();
        }
        finally
        {
            System.Buffers.ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    /// <summary>Headers no hop may pass on (RFC 9110, 7.6.1), and those the server that answers sets itself.</summary>
    private static readonly FrozenSet<string> HopHeaders = FrozenSet.ToFrozenSet(
        ["connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade", "content-length", "date", "server", "alt-svc"],
        StringComparer.OrdinalIgnoreCase);

    /// <summary>The answer's headers a client relies on (ids, rate limits, retry advice, the content type), as the upstream gave them.</summary>
    private static List<KeyValuePair<string, string>> PassedOn(HttpResponseMessage response)
    {
        var kept = new List<KeyValuePair<string, string>>();
        foreach (var (name, values) in response.Headers.NonValidated)
        {
            if (!HopHeaders.Contains(name))
            {
                kept.Add(new(name, values.ToString()));
            }
        }

        foreach (var (name, values) in response.Content.Headers.NonValidated)
        {
            if (!HopHeaders.Contains(name))
            {
                kept.Add(new(name, values.ToString()));
            }
        }

        return kept;
    }

    private static string? First(HttpResponseHeaders headers, string name) =>
        headers.TryGetValues(name, out var values) ? values.FirstOrDefault() : null;

    private static string DescribeTransportError(HttpRequestException ex)
    {
        // The message of the innermost socket error says what happened (refused, reset) without
        // repeating the request, and an HttpRequestException never carries its headers.
        var inner = ex.InnerException?.InnerException ?? ex.InnerException;
        return ex.HttpRequestError switch
        {
            HttpRequestError.ConnectionError => $"connection failed: {inner?.Message ?? ex.Message}",
            HttpRequestError.ResponseEnded => "the upstream closed the connection before a complete answer",
            HttpRequestError.NameResolutionError => $"the host name could not be resolved: {inner?.Message ?? ex.Message}",
            HttpRequestError.SecureConnectionError => $"the TLS handshake failed: {inner?.Message ?? ex.Message}",
            _ => inner?.Message ?? ex.Message,
        };
    }

    private static Uri Join(Uri baseUrl, string url)
    {
        var basePath = baseUrl.AbsolutePath.TrimEnd('/');
        var path = basePath.EndsWith("/v1", StringComparison.Ordinal) && url.StartsWith("/v1/", StringComparison.Ordinal)
            ? basePath + url[3..]
            : basePath + url;
        return new UriBuilder(baseUrl) { Path = path }.Uri;
    }
}
