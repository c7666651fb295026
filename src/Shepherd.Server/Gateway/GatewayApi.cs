using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.AspNetCore.Routing;
using Shepherd.Engine.Dispatch;
using Shepherd.Engine.Formats;
using Shepherd.Engine.Pricing;
using Shepherd.Server.Http;

namespace Shepherd.Server.Gateway;

/// <summary>
/// The realtime door: <c>POST /v1/chat/completions</c>, <c>/v1/completions</c>,
/// <c>/v1/embeddings</c>, <c>/v1/responses</c> (OpenAI dialect) and <c>/v1/messages</c>
/// (Anthropic dialect) answered synchronously through the same lanes as batch work, ahead of it.
/// The provider's answer (status, body, the headers a client relies on) comes back as the
/// provider gave it, a stream relayed event by event; errors Shepherd makes itself are in the
/// door's envelope. A call that can wait (<c>x-shepherd-deadline</c>, <c>Prefer: wait=N</c>) goes
/// to <see cref="DeadlineCalls"/> instead.
/// </summary>
internal sealed class GatewayApi(Dispatcher dispatcher, DeadlineCalls deadlines, RealtimeLedger ledger, ServerOptions options, TimeProvider time)
{
    /// <summary>The header the OpenAI and Anthropic SDKs send their timeout in, in seconds.</summary>
    private const string SdkTimeoutHeader = "x-stainless-timeout";

    public void Map(IEndpointRouteBuilder app)
    {
        foreach (var url in BatchEndpoints.All)
        {
            app.MapPost(url, (HttpContext context) => CallAsync(context, url));
        }

        app.MapGet("/v1/calls/{id}", (HttpContext context, string id) => deadlines.GetAsync(context, id));
    }

    private async Task CallAsync(HttpContext context, string url)
    {
        var caller = Caller.Of(context);
        var request = await GatewayRequest.ReadAsync(context.Request, url, options, context.RequestAborted);
        if (!dispatcher.Serves(request.Model))
        {
            throw new ApiException(StatusCodes.Status404NotFound, $"No upstream of this server serves the model {request.Model}.", "model", "model_not_served");
        }

        var wait = WaitHeaders.Read(context.Request, time.GetUtcNow());
        if (wait is not null && wait.CanWait(time.GetUtcNow()))
        {
            await deadlines.CallAsync(context, caller, request, wait);
            return;
        }

        var owner = caller.Owner ?? "";
        var held = 0L;
        if (caller.Limits?.DailyBudgetUsd is { } budgetUsd && Cost.BudgetFromUsd(budgetUsd) is { } budget)
        {
            held = dispatcher.MostCostNanos(request.Model, request.Body);
            if (ledger.TryHold(owner, budget, held) is { } spent)
            {
                var now = time.GetUtcNow();
                var tomorrow = new DateTimeOffset(now.UtcDateTime.Date.AddDays(1), TimeSpan.Zero);
                context.Response.Headers.RetryAfter = Math.Ceiling((tomorrow - now).TotalSeconds).ToString(CultureInfo.InvariantCulture);
                await ErrorEnvelope.For(Doors.Of(context), StatusCodes.Status429TooManyRequests,
                    $"This key's tenant has spent ${spent / 1e9:0.######} of its daily budget of ${budgetUsd:0.######} on realtime calls, and this call may cost up to ${held / 1e9:0.######}. The budget renews at 00:00 UTC.",
                    null, "budget_exceeded").ExecuteAsync(context);
                return;
            }
        }

        try
        {
            await SendAsync(context, request, caller, wait?.Deadline);
        }
        finally
        {
            if (held > 0)
            {
                ledger.Release(owner, held);
            }
        }
    }

    /// <summary>Sends the call through the lanes and writes what came back; nothing when the caller left. A call due within a minute has its deadline for a timeout.</summary>
    private async Task SendAsync(HttpContext context, GatewayRequest request, Caller caller, DateTimeOffset? due)
    {
        var timeout = time.GetUtcNow() + TimeoutOf(context.Request);
        var call = new RealtimeCall(request.Url, request.Model, request.Body, caller.Owner, due < timeout ? due.Value : timeout)
        {
            Stream = request.Stream,
            HideUsage = request.HideUsage,
            Aborted = context.RequestAborted,
        };
        RealtimeAnswer answer;
        try
        {
            answer = await dispatcher.CallAsync(call, context.RequestAborted);
        }
        catch (OperationCanceledException) when (context.RequestAborted.IsCancellationRequested)
        {
            // The caller left: the upstream call was cancelled with it, and no one is there to answer.
            return;
        }

        await WriteAsync(context, answer);
    }

    /// <summary>How long the caller waits: its SDK's timeout when it says, else <see cref="ServerOptions.CallTimeout"/>.</summary>
    private TimeSpan TimeoutOf(HttpRequest request) =>
        double.TryParse(request.Headers[SdkTimeoutHeader].ToString(), NumberStyles.Float, CultureInfo.InvariantCulture, out var seconds) && seconds > 0
            ? TimeSpan.FromSeconds(Math.Min(seconds, options.CallTimeout.TotalSeconds))
            : options.CallTimeout;

    /// <summary>Writes the provider's answer as it gave it, or Shepherd's own error in the door's envelope.</summary>
    internal static async Task WriteAsync(HttpContext context, RealtimeAnswer answer)
    {
        var response = context.Response;
        if (answer.Error is { } error)
        {
            if (error.RetryAfter is { } retry)
            {
                response.Headers.RetryAfter = Math.Max(1, Math.Ceiling(retry.TotalSeconds)).ToString(CultureInfo.InvariantCulture);
            }

            await ErrorEnvelope.For(Doors.Of(context), error.Status, error.Message, null, error.Code).ExecuteAsync(context);
            return;
        }

        response.StatusCode = answer.StatusCode ?? StatusCodes.Status502BadGateway;
        foreach (var (name, value) in answer.Headers)
        {
            if (response.Headers.TryGetValue(name, out var own) && name.Contains("request-id", StringComparison.OrdinalIgnoreCase))
            {
                // The provider's id is the one its SDKs show; Shepherd's own stays beside it.
                response.Headers["x-shepherd-request-id"] = own;
            }

            response.Headers[name] = value;
        }

        if (answer.Attempts > 0)
        {
            response.Headers["x-shepherd-attempts"] = answer.Attempts.ToString(CultureInfo.InvariantCulture);
        }

        if (answer.Events is { } events)
        {
            context.Features.Get<IHttpResponseBodyFeature>()?.DisableBuffering();
            await response.StartAsync(context.RequestAborted);
            try
            {
                await events.RelayAsync(response.Body, context.RequestAborted);
            }
            catch (Exception ex) when (ex is OperationCanceledException or IOException && context.RequestAborted.IsCancellationRequested)
            {
                // The caller left mid-stream: the relay closed the upstream response, which ends the provider's work.
            }

            return;
        }

        await response.Body.WriteAsync(answer.Body ?? [], context.RequestAborted);
    }
}

/// <summary>A realtime call's body as read and checked: its model, whether it streams, and the body to send.</summary>
/// <param name="Url">The API path.</param>
/// <param name="Model">The model the body names.</param>
/// <param name="Body">The body to send: the caller's, with the usage asked for when a stream would not carry it.</param>
/// <param name="Stream">True when the caller asked for a stream.</param>
/// <param name="HideUsage">True when Shepherd asked for the usage and the caller did not: the usage-only event is taken out.</param>
internal sealed record GatewayRequest(string Url, string Model, byte[] Body, bool Stream, bool HideUsage)
{
    /// <summary>Reads the body (at most <see cref="ServerOptions.MaxCallBodyBytes"/>) and checks what the door needs of it.</summary>
    public static async Task<GatewayRequest> ReadAsync(HttpRequest request, string url, ServerOptions options, CancellationToken cancellationToken)
    {
        var body = await ReadBodyAsync(request, options.MaxCallBodyBytes, cancellationToken);
        var (model, stream, usageAsked) = Read(body);
        if (string.IsNullOrWhiteSpace(model))
        {
            throw ApiException.BadRequest("The body needs \"model\": the name of the model to call, as a string.", "model");
        }

        if (stream && url == BatchEndpoints.Embeddings)
        {
            throw ApiException.BadRequest("Embeddings are not streamed: leave \"stream\" out.", "stream");
        }

        // OpenAI's chat and completion streams carry usage only when asked: Shepherd asks, to price
        // the call, and takes the usage chunk out again when the caller did not ask for it.
        var hideUsage = stream && !usageAsked && url is BatchEndpoints.ChatCompletions or BatchEndpoints.Completions;
        if (hideUsage)
        {
            var json = (JsonObject)JsonNode.Parse(body)!;
            var streamOptions = json["stream_options"] as JsonObject ?? [];
            streamOptions["include_usage"] = true;
            json["stream_options"] = streamOptions;
            body = System.Text.Encoding.UTF8.GetBytes(json.ToJsonString());
        }

        return new GatewayRequest(url, model, body, stream, hideUsage);
    }

    /// <summary>
    /// Reads what the door needs of a body in one pass, without building it: its model, whether
    /// it streams, and whether it asks for a stream's usage; refuses one that is not a JSON object.
    /// </summary>
    private static (string? Model, bool Stream, bool UsageAsked) Read(byte[] body)
    {
        string? model = null;
        bool stream = false, usageAsked = false;
        if (body.Length == 0)
        {
            throw ApiException.BadRequest("The body is empty: send the provider's request, a JSON object naming its \"model\".", code: "invalid_json");
        }

        // Text a reader passes unread (invalid UTF-8, an escaped lone surrogate) is refused here,
        // before anything decodes it and before a provider that chokes on it is blamed for it.
        var options = new JsonReaderOptions { MaxDepth = 256 };
        try
        {
            if (JsonText.Problem(body, options, out var at) is { } problem)
            {
                throw ApiException.BadRequest($"The body is not valid JSON text: {problem} (at byte {at}).", code: "invalid_json");
            }

            var reader = new Utf8JsonReader(body, options);
            if (!reader.Read() || reader.TokenType != JsonTokenType.StartObject)
            {
                throw ApiException.BadRequest("The body must be a JSON object.", code: "invalid_json");
            }

            while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
            {
                var field = reader.ValueTextEquals("model"u8) ? 1 : reader.ValueTextEquals("stream"u8) ? 2 : reader.ValueTextEquals("stream_options"u8) ? 3 : 0;
                reader.Read();
                switch (field)
                {
                    case 1:
                        model = reader.TokenType == JsonTokenType.String ? reader.GetString() : null;
                        break;
                    case 2 when reader.TokenType is JsonTokenType.True or JsonTokenType.False or JsonTokenType.Null:
                        stream = reader.TokenType == JsonTokenType.True;
                        break;
                    case 2:
                        throw ApiException.BadRequest("\"stream\" must be true or false.", "stream");
                    case 3 when reader.TokenType == JsonTokenType.StartObject:
                        usageAsked = AsksForUsage(ref reader);
                        break;
                    default:
                        reader.Skip();
                        break;
                }
            }

            if (reader.Read())
            {
                throw ApiException.BadRequest("The body must be one JSON object, with nothing after it.", code: "invalid_json");
            }
        }
        catch (JsonException ex)
        {
            throw ApiException.BadRequest($"The body is not valid JSON: {ex.Message}", code: "invalid_json");
        }

        return (model, stream, usageAsked);
    }

    /// <summary>Reads <c>stream_options</c> through its end: true when it holds <c>"include_usage": true</c>.</summary>
    private static bool AsksForUsage(ref Utf8JsonReader reader)
    {
        var asked = false;
        while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
        {
            var usage = reader.ValueTextEquals("include_usage"u8);
            reader.Read();
            asked |= usage && reader.TokenType == JsonTokenType.True;
            reader.Skip();
        }

        return asked;
    }

    private static async Task<byte[]> ReadBodyAsync(HttpRequest request, long max, CancellationToken cancellationToken)
    {
        if (request.ContentLength is { } length)
        {
            if (length > max)
            {
                throw new ApiException(StatusCodes.Status413PayloadTooLarge, $"The request body is larger than a call accepts ({max} bytes).");
            }

            var known = new byte[length];
            await request.Body.ReadExactlyAsync(known, cancellationToken);
            return known;
        }

        using var copy = new MemoryStream();
        await request.Body.CopyToAsync(copy, cancellationToken);
        return copy.ToArray();
    }
}
