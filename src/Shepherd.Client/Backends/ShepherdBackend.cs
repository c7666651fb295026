using System.Globalization;
using System.Runtime.CompilerServices;
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

        AddBudget(body, batch.BudgetUsd);
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
