using System.Globalization;
using System.Net;
using System.Runtime.CompilerServices;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Shepherd.Client.Http;

namespace Shepherd.Client.Backends;

/// <summary>
/// A Shepherd server: the OpenAI dialect, plus inline creates, paged results in input order,
/// single results by custom id, and retries of failed requests made on the server.
/// </summary>
internal sealed class ShepherdBackend(ApiPipeline pipeline, ShepherdClientOptions options) : OpenAIBackend(pipeline, options)
{
    /// <summary>The longest a Shepherd server holds a <c>?wait=</c> request.</summary>
    private static readonly TimeSpan MaxHold = TimeSpan.FromSeconds(60);

    /// <summary>The header that makes a call one that can wait, with its deadline (<c>10m</c>, <c>2h</c>).</summary>
    private const string DeadlineHeader = "x-shepherd-deadline";

    /// <inheritdoc />
    protected override bool HonoursIdempotencyKeys => true;

    /// <inheritdoc />
    protected override bool IsShepherd => true;

    public override Task<Batch> CreateAsync(NewBatch batch, string idempotencyKey, CancellationToken cancellationToken)
    {
        var body = new JsonObject
        {
            ["model"] = batch.Model,
            ["endpoint"] = batch.Endpoint ?? DefaultEndpoint,
            ["priority"] = batch.Priority.ToString().ToLowerInvariant(),
            ["requests"] = new JsonArray([.. batch.Requests.Select(r => (JsonNode)(r.Prompt is { } prompt
                ? new JsonObject { ["custom_id"] = r.CustomId, ["prompt"] = prompt }
                : new JsonObject { ["custom_id"] = r.CustomId, ["body"] = Requests.BodyOf(r, batch.Endpoint ?? DefaultEndpoint, model: null) }))]),
        };
        if (batch.Metadata is { Count: > 0 } metadata)
        {
            body["metadata"] = new JsonObject(metadata.Select(p => KeyValuePair.Create(p.Key, (JsonNode?)p.Value)));
        }

        if (batch.CompletionWindow is { } window)
        {
            body["completion_window"] = Requests.WindowText(window);
        }

        AddShepherdFields(body, new FileBatchOptions { BudgetUsd = batch.BudgetUsd, OutputSchema = batch.OutputSchema, MaxInvalidAttempts = batch.MaxInvalidAttempts });
        if (batch.Mode is { } mode)
        {
            body["mode"] = mode.ToApiName();
        }

        if (batch.Cache is { } cache)
        {
            body["cache"] = cache;
        }

        if (batch.CacheSampled is { } sampled)
        {
            body["cache_sampled"] = sampled;
        }

        return PostBatchAsync("v1/batches", body.ToJsonString(), idempotencyKey, cancellationToken);
    }

    /// <summary>
    /// Asks the server to hold the answer until the batch ends (<c>?wait=</c>), so the wait
    /// learns of the end at once. An answer that comes before its hold is over without the end
    /// (a server of an older version, or one stopping) is followed by a plain look after the rest.
    /// </summary>
    public override async Task<Batch> WatchAsync(string batchId, TimeSpan wait, CancellationToken cancellationToken)
    {
        var time = Options.TimeProvider;
        var until = time.GetUtcNow() + wait;
        while (true)
        {
            // The server holds a request at most MaxHold; the request's own timeout must outlast the hold.
            var hold = new[] { until - time.GetUtcNow(), MaxHold, Options.RequestTimeout / 2 }.Min();
            var sent = time.GetTimestamp();
            var batch = await GetAsync(batchId, CallKind.Look, hold > TimeSpan.Zero ? string.Create(CultureInfo.InvariantCulture, $"?wait={hold.TotalSeconds:0.###}") : "", cancellationToken);
            var left = until - time.GetUtcNow();
            if (batch.HasEnded || left <= TimeSpan.Zero)
            {
                return batch;
            }

            if (time.GetElapsedTime(sent) < hold)
            {
                return await base.WatchAsync(batchId, left, cancellationToken);
            }
        }
    }

    public override async IAsyncEnumerable<BatchResult> ResultsAsync(Batch batch, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        var batchId = batch.Id;
        var offset = 0L;
        while (true)
        {
            var path = $"v1/batches/{Uri.EscapeDataString(batchId)}/results?offset={offset}&limit={Options.ResultsPageSize}";
            var page = (await Pipeline.SendJsonAsync(() => Pipeline.Request(HttpMethod.Get, path), cancellationToken)).Json;
            foreach (var line in page.GetProperty("data").EnumerateArray())
            {
                offset++;
                yield return Wire.OpenAIResult(line);
            }

            if (!page.GetProperty("has_more").GetBoolean())
            {
                yield break;
            }
        }
    }

    public override async Task<BatchResult?> ResultAsync(Batch batch, string customId, CancellationToken cancellationToken)
    {
        try
        {
            var path = $"v1/batches/{Uri.EscapeDataString(batch.Id)}/results/{Uri.EscapeDataString(customId)}";
            return Wire.OpenAIResult((await Pipeline.SendJsonAsync(() => Pipeline.Request(HttpMethod.Get, path), cancellationToken)).Json);
        }
        catch (ShepherdApiException ex) when (ex.StatusCode == 404 && ex.Param == "custom_id")
        {
            return null;
        }
    }

    /// <summary>
    /// Sent with <c>x-shepherd-deadline</c> and <c>Prefer: respond-async</c>: the server stores the
    /// call and answers 202 with its id at once. Sent once (the server keeps no idempotency key for
    /// calls), and again only after answers that say it was not taken.
    /// </summary>
    public override async Task<string> StartCallAsync(string url, JsonObject body, TimeSpan deadline, CancellationToken cancellationToken)
    {
        var json = body.ToJsonString();
        var accepted = await Pipeline.SendJsonAsync(() =>
        {
            var request = Pipeline.Request(HttpMethod.Post, url.TrimStart('/'), new StringContent(json, Encoding.UTF8, "application/json"));
            request.Headers.TryAddWithoutValidation(DeadlineHeader, Requests.WindowText(deadline));
            request.Headers.TryAddWithoutValidation("Prefer", "respond-async");
            return request;
        }, cancellationToken, CallKind.Once);
        return Wire.String(accepted.Json, "id") ?? throw new JsonException($"POST {url} answered {accepted.Response.Status} without a call id.");
    }

    /// <summary>
    /// <c>GET /v1/calls/{id}</c> with <c>Prefer: wait=</c>, so the server holds the look until the
    /// answer is in (at most <see cref="MaxHold"/>, and half the request timeout). A 202 that comes
    /// sooner than the server's <c>Retry-After</c> (a server stopping) is followed by a pause for the rest of it.
    /// </summary>
    public override async Task<CallAnswer?> LookAtCallAsync(string callId, CallKind kind, CancellationToken cancellationToken)
    {
        var time = Options.TimeProvider;
        var hold = (long)Math.Min(MaxHold.TotalSeconds, Options.RequestTimeout.TotalSeconds / 2);
        var sent = time.GetTimestamp();
        using var response = await Pipeline.SendAsync(() =>
        {
            var request = Pipeline.Request(HttpMethod.Get, "v1/calls/" + Uri.EscapeDataString(callId));
            if (hold > 0)
            {
                request.Headers.TryAddWithoutValidation("Prefer", string.Create(CultureInfo.InvariantCulture, $"wait={hold}"));
            }

            return request;
        }, cancellationToken, kind: kind);
        if (response.StatusCode != HttpStatusCode.Accepted)
        {
            return Wire.CallAnswer(await ApiPipeline.ReadJsonAsync(response, cancellationToken), callId);
        }

        var pause = (Pipeline.RetryAfter(response) ?? Options.PollInitialDelay) - time.GetElapsedTime(sent);
        if (pause > TimeSpan.Zero)
        {
            await Task.Delay(pause, time, cancellationToken);
        }

        return null;
    }

    /// <summary>Made on the server, which keeps the idempotency key: asking again returns the same retry.</summary>
    public override async Task<Batch?> RetryFailedAsync(Batch batch, string idempotencyKey, CancellationToken cancellationToken)
    {
        try
        {
            return await PostBatchAsync($"v1/batches/{Uri.EscapeDataString(batch.Id)}/retry_failed", "{}", idempotencyKey, cancellationToken);
        }
        catch (ShepherdApiException ex) when (ex.ErrorCode == "nothing_to_retry")
        {
            return null;
        }
    }
}
