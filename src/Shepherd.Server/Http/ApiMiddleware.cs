using System.Collections.Frozen;
using System.Security.Cryptography;
using System.Text.Json;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.Extensions.Logging;
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
    private readonly FrozenDictionary<string, string>? _owners;
    private readonly ILogger<ApiMiddleware> _logger;

    public ApiMiddleware(RequestDelegate next, ServerOptions options, ILogger<ApiMiddleware> logger)
    {
        _next = next;
        _options = options;
        _logger = logger;
        // Keys are looked up by their hash, so the lookup takes the same path for every wrong key.
        _owners = options.GatewayKeys.Count == 0
            ? null
            : options.GatewayKeys.ToFrozenDictionary(k => GatewayKey.Hash(k.Key.Reveal()), k => k.Owner, StringComparer.Ordinal);
    }

    public async Task InvokeAsync(HttpContext context)
    {
        var door = Doors.Of(context);
        var requestId = "req_" + Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(12));
        context.Response.Headers[door == Door.Anthropic ? "request-id" : "x-request-id"] = requestId;
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

        return path.Equals("/v1/batches", StringComparison.Ordinal) || path.Equals("/v1/messages/batches", StringComparison.Ordinal)
            || path.Equals("/v1/batches/estimate", StringComparison.Ordinal)
            ? _options.MaxCreateBodyBytes
            : _options.MaxSmallBodyBytes;
    }

    private Caller? Authenticate(HttpRequest request)
    {
        if (_owners is null)
        {
            return new Caller(null);
        }

        var key = request.Headers["x-api-key"].ToString();
        var authorization = request.Headers.Authorization.ToString();
        if (key.Length == 0 && authorization.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase))
        {
            key = authorization["Bearer ".Length..].Trim();
        }

        return key.Length > 0 && _owners.TryGetValue(GatewayKey.Hash(key), out var owner) ? new Caller(owner) : null;
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
            case FileTooLargeException:
                return new ApiException(StatusCodes.Status413PayloadTooLarge, $"The file is larger than the limit of {_options.MaxUploadBytes} bytes.");
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
