using System.Collections.Frozen;
using System.Security.Cryptography;
using System.Text.Json;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.Extensions.Logging;
using Shepherd.Engine.Dispatch;
using Shepherd.Engine.Model;
using Shepherd.Engine.Storage;

namespace Shepherd.Server.Http;

/// <summary>
/// Runs around every API call: gives it a request id, sets its body limit, checks its key, and
/// turns whatever goes wrong into the door's error envelope.
/// </summary>
internal sealed partial class ApiMiddleware
{
    private readonly RequestDelegate _next;
    private readonly ServerOptions _options;
    private readonly FrozenDictionary<string, GatewayKey>? _keys;
    private readonly TimeProvider _time;
    private readonly Dictionary<string, RateBucket> _rates = new(StringComparer.Ordinal);
    private readonly ILogger<ApiMiddleware> _logger;

    public ApiMiddleware(RequestDelegate next, ServerOptions options, TimeProvider time, ILogger<ApiMiddleware> logger)
    {
        _next = next;
        _options = options;
        _time = time;
        _logger = logger;
        // Keys are looked up by their hash, so the lookup takes the same path for every wrong key.
        _keys = options.GatewayKeys.Count == 0
            ? null
            : options.GatewayKeys.ToFrozenDictionary(k => k.KeySha256, StringComparer.Ordinal);
    }

    public async Task InvokeAsync(HttpContext context)
    {
        var door = Doors.Of(context);
        var requestId = "req_" + Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(12));
        context.Response.Headers[door == BatchDoor.Anthropic ? "request-id" : "x-request-id"] = requestId;
        // The API is under /v1 and needs a key; the dashboard's page, health and metrics do not
        // (the page holds no data: it asks the API with the key the user gives it).
        var open = !context.Request.Path.StartsWithSegments("/v1", StringComparison.Ordinal);
        if (open && context.Request.Path.Value is "/health" or "/healthz" or "/readyz" or "/metrics")
        {
            await _next(context);
            return;
        }

        if (context.Features.Get<IHttpMaxRequestBodySizeFeature>() is { IsReadOnly: false } limit)
        {
            limit.MaxRequestBodySize = BodyLimit(context.Request);
        }

        try
        {
            if (open)
            {
                await _next(context);
                return;
            }

            if (Authenticate(context.Request) is not { } caller)
            {
                await ErrorEnvelope.For(door, StatusCodes.Status401Unauthorized,
                    "A valid API key is required: send it as \"Authorization: Bearer KEY\" or \"x-api-key: KEY\".").ExecuteAsync(context);
                return;
            }

            if (Refusal(context.Request, caller) is { } refusal)
            {
                await refusal.ExecuteAsync(context, door);
                return;
            }

            context.Features.Set(caller);
            await _next(context);
        }
        catch (Exception ex) when (!context.Response.HasStarted && Describe(ex, context, requestId) is { } error)
        {
            await ErrorEnvelope.For(door, error.Status, error.Message, error.Param, error.Code).ExecuteAsync(context);
        }
    }

    private long BodyLimit(HttpRequest request)
    {
        if (!HttpMethods.IsPost(request.Method))
        {
            return _options.MaxSmallBodyBytes;
        }

        var path = request.Path;
        if (path.Equals("/v1/files", StringComparison.Ordinal))
        {
            // Room for the multipart framing and the purpose field around the file.
            return _options.MaxUploadBytes + 1024 * 1024;
        }

        if (Engine.Formats.BatchEndpoints.Find(path.Value) is not null)
        {
            return _options.MaxCallBodyBytes;
        }

        return path.Equals("/v1/batches", StringComparison.Ordinal) || path.Equals("/v1/messages/batches", StringComparison.Ordinal)
            || path.Equals("/v1/batches/estimate", StringComparison.Ordinal)
            ? _options.MaxCreateBodyBytes
            : _options.MaxSmallBodyBytes;
    }

    /// <summary>
    /// Why the call may not go on, or null: its key lacks the scope (reads need <c>read</c>;
    /// uploads, creates, cancels and deletes need <c>submit</c>), or its tenant is over its rate.
    /// </summary>
    private Refusal? Refusal(HttpRequest request, Caller caller)
    {
        var reads = HttpMethods.IsGet(request.Method) || HttpMethods.IsHead(request.Method) || request.Path.Equals("/v1/batches/estimate", StringComparison.Ordinal);
        var needs = reads ? KeyScopes.Read : KeyScopes.Submit;
        if (!caller.IsAdmin && !caller.Scopes.HasFlag(needs))
        {
            return new Refusal(StatusCodes.Status403Forbidden, reads
                ? "This key may not read: it lacks the read scope."
                : "This key may only read: uploading, creating, cancelling and deleting need the submit scope.", null);
        }

        if (caller.Limits?.RequestsPerMinute is not { } perMinute)
        {
            return null;
        }

        var now = _time.GetUtcNow();
        lock (_rates)
        {
            var key = caller.Owner ?? "";
            if (!_rates.TryGetValue(key, out var bucket))
            {
                _rates[key] = bucket = new RateBucket(perMinute, now);
            }

            var wait = bucket.WaitFor(1, now);
            if (wait > TimeSpan.Zero)
            {
                return new Refusal(StatusCodes.Status429TooManyRequests,
                    $"Too many calls with this key: its tenant may make {perMinute:0.##} a minute, at most {perMinute / 60:0.##} in any second. Try again in {Math.Ceiling(wait.TotalSeconds):0} s.", wait);
            }

            bucket.Add(1, now);
        }

        return null;
    }

    private Caller? Authenticate(HttpRequest request)
    {
        if (_keys is null)
        {
            return new Caller(null);
        }

        var key = request.Headers["x-api-key"].ToString();
        var authorization = request.Headers.Authorization.ToString();
        if (key.Length == 0 && authorization.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase))
        {
            key = authorization["Bearer ".Length..].Trim();
        }

        return key.Length > 0 && _keys.TryGetValue(GatewayKey.Hash(key), out var known) ? new Caller(known.Owner, known.Scopes, known.Limits) : null;
    }

    private ApiException? Describe(Exception exception, HttpContext context, string requestId)
    {
        switch (exception)
        {
            case ApiException api:
                return api;
            case BadHttpRequestException { StatusCode: StatusCodes.Status413PayloadTooLarge }:
                return new ApiException(StatusCodes.Status413PayloadTooLarge,
                    $"The request body is larger than this call accepts ({BodyLimit(context.Request)} bytes).");
            case BadHttpRequestException bad:
                return new ApiException(bad.StatusCode, bad.Message);
            case JsonException json:
                return ApiException.BadRequest($"The body is not valid JSON: {json.Message}", code: "invalid_json");
            case FileTooLargeException tooLarge:
                return new ApiException(StatusCodes.Status413PayloadTooLarge, tooLarge.Message);
            case StoreException:
                // A full disk, a read-only or unreachable database: what was stored stays as it
                // was; the caller is told to come back, and the operator finds the cause in the log.
                LogFailed(exception, context.Request.Method, context.Request.Path.Value, requestId);
                context.Response.Headers.RetryAfter = "5";
                return new ApiException(StatusCodes.Status503ServiceUnavailable,
                    $"The server cannot use its store now, so nothing was changed; try again later (logged as {requestId}).", null, "store_unavailable");
            case OperationCanceledException when context.RequestAborted.IsCancellationRequested:
                // The client went away; there is no one to answer.
                return null;
            default:
                LogFailed(exception, context.Request.Method, context.Request.Path.Value, requestId);
                return new ApiException(StatusCodes.Status500InternalServerError, $"The server failed to handle the request; it has been logged as {requestId}.");
        }
    }

    [LoggerMessage(Level = LogLevel.Error, Message = "{Method} {Path} failed (request {RequestId})")]
    private partial void LogFailed(Exception exception, string method, string? path, string requestId);
}

/// <summary>A call refused before it reaches its route: a 403 or a 429 (with when to try again) in the door's envelope.</summary>
internal sealed record Refusal(int Status, string Message, TimeSpan? RetryAfter)
{
    public Task ExecuteAsync(HttpContext context, BatchDoor door)
    {
        if (RetryAfter is { } wait)
        {
            context.Response.Headers.RetryAfter = Math.Max(1, Math.Ceiling(wait.TotalSeconds)).ToString(System.Globalization.CultureInfo.InvariantCulture);
        }

        return ErrorEnvelope.For(door, Status, Message, null, Status == StatusCodes.Status429TooManyRequests ? "rate_limit_exceeded" : "permission_denied").ExecuteAsync(context);
    }
}
