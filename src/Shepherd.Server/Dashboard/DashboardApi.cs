using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Shepherd.Engine.Batches;
using Shepherd.Engine.Model;
using Shepherd.Engine.Pricing;
using Shepherd.Server.Hosting;
using Shepherd.Server.Http;
using Shepherd.Server.OpenAI;

namespace Shepherd.Server.Dashboard;

/// <summary>
/// The dashboard: its static page at <c>/</c> (HTML, CSS and JavaScript embedded in the server,
/// no build step) and the JSON it reads under <c>/v1/dashboard</c>, with the caller's key like
/// every API call: batches of every door, a batch's answers over time, its failures by kind (or
/// why its input was refused), its latency percentiles and the lanes that serve it, cancel, and
/// results and errors as JSONL.
/// </summary>
internal sealed class DashboardApi(ServerCore core)
{
    /// <summary>Bucket widths for the timeline, so a batch of any length shows at most about 120 points.</summary>
    private static readonly int[] BucketSeconds = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600];

    private static readonly Dictionary<string, string> Assets = new(StringComparer.Ordinal)
    {
        ["index.html"] = "text/html; charset=utf-8",
        ["format.js"] = "text/javascript; charset=utf-8",
        ["chart.js"] = "text/javascript; charset=utf-8",
        ["views.js"] = "text/javascript; charset=utf-8",
        ["app.js"] = "text/javascript; charset=utf-8",
        ["style.css"] = "text/css; charset=utf-8",
    };

    public void Map(WebApplication app)
    {
        app.MapGet("/", (HttpContext context) => Asset(context, "index.html"));
        app.MapGet("/dashboard/{name}", (HttpContext context, string name) => Asset(context, name));
        app.MapGet("/v1/dashboard/batches", (Delegate)ListAsync);
        app.MapGet("/v1/dashboard/batches/{id}", (Delegate)BatchAsync);
        app.MapPost("/v1/dashboard/batches/{id}/cancel", async (HttpContext context, string id) =>
        {
            var batch = await core.CancelAsync(await OwnBatchAsync(context, id), context.RequestAborted);
            return new JsonBody(json => WriteBatch(json, batch));
        });
        app.MapGet("/v1/dashboard/batches/{id}/download", (Delegate)DownloadAsync);
    }

    private static IResult Asset(HttpContext context, string name)
    {
        if (!Assets.TryGetValue(name, out var contentType) || typeof(DashboardApi).Assembly.GetManifestResourceStream("dashboard/" + name) is not { } content)
        {
            throw ApiException.NotFound($"There is no dashboard file '{name}'.");
        }

        context.Response.Headers.CacheControl = "no-cache";
        return Results.Stream(content, contentType);
    }

    private async Task<IResult> ListAsync(HttpContext context)
    {
        var limit = Fields.Int(context.Request.Query, "limit", 100, 1, 500);
        var page = await core.Store.ListBatchesAsync(Caller.Of(context).Listing, ServerCore.EveryDoor, new PageRequest(limit), context.RequestAborted);
        return new JsonBody(json =>
        {
            json.WriteStartObject();
            json.WriteStartArray("data");
            foreach (var batch in page.Items)
            {
                WriteBatch(json, batch);
            }

            json.WriteEndArray();
            json.WriteBoolean("has_more", page.HasMore);
            json.WriteEndObject();
        });
    }

    private async Task<IResult> BatchAsync(HttpContext context, string id)
    {
        var batch = await OwnBatchAsync(context, id);
        var from = batch.InProgressAt ?? batch.CreatedAt;
        var to = EndedAt(batch) ?? core.Time.GetUtcNow();
        var seconds = Math.Max(1, (to - from).TotalSeconds);
        var bucket = BucketSeconds.FirstOrDefault(width => seconds / width <= 120, BucketSeconds[^1]);
        var activity = await core.Store.GetActivityAsync(batch.Id, TimeSpan.FromSeconds(bucket), context.RequestAborted);
        var lanes = await core.LanesOfAsync(batch, all: true, context.RequestAborted);
        return new JsonBody(json =>
        {
            json.WriteStartObject();
            json.WritePropertyName("batch");
            WriteBatch(json, batch);
            json.WriteNumber("bucket_seconds", bucket);
            json.WriteStartArray("timeline");
            foreach (var point in activity.Timeline)
            {
                json.WriteStartObject();
                json.WriteNumber("t", point.Start.ToUnixTimeSeconds());
                json.WriteNumber("requests", point.Requests);
                json.WriteNumber("tokens", point.Tokens);
                json.WriteNumber("failed", point.Failed);
                json.WriteEndObject();
            }

            json.WriteEndArray();
            json.WriteStartArray("errors");
            foreach (var error in activity.Errors)
            {
                json.WriteStartObject();
                json.WriteString("kind", error.Kind);
                json.WriteNumber("count", error.Count);
                json.WriteEndObject();
            }

            json.WriteEndArray();
            // Why the input was refused, as shepherd status lists it: a refused batch has no requests to fail.
            json.WriteStartArray("input_errors");
            foreach (var error in batch.Errors)
            {
                error.WriteTo(json);
            }

            json.WriteEndArray();
            WriteLatency(json, activity.LatenciesMs);
            json.WriteStartArray("lanes");
            foreach (var lane in lanes)
            {
                LaneJson.Write(json, lane);
            }

            json.WriteEndArray();
            json.WriteEndObject();
        });
    }

    private async Task DownloadAsync(HttpContext context, string id)
    {
        var batch = await OwnBatchAsync(context, id);
        var kind = Fields.Text(context.Request.Query, "kind") ?? "results";
        if (kind is not ("results" or "errors"))
        {
            throw ApiException.BadRequest($"kind must be 'results' or 'errors'; got '{kind}'.", "kind");
        }

        context.Response.ContentType = "application/jsonl";
        context.Response.Headers.ContentDisposition = $"attachment; filename=\"{batch.Id}_{kind}.jsonl\"";
        var body = context.Response.Body;
        await ResultExporter.ExportAsync(core.Store, batch, kind == "results" ? body : Stream.Null, kind == "errors" ? body : Stream.Null, context.RequestAborted);
    }

    /// <summary>The caller's batch, whichever door it came in by, or a 404.</summary>
    private Task<BatchRecord> OwnBatchAsync(HttpContext context, string id) =>
        core.GetBatchAsync(Caller.Of(context), id, Door.OpenAI, context.RequestAborted);

    private static DateTimeOffset? EndedAt(BatchRecord batch) =>
        batch.CompletedAt ?? batch.CancelledAt ?? batch.FailedAt ?? (batch.Status == BatchStatus.Expired ? batch.ExpiredAt : null);

    private static void WriteBatch(Utf8JsonWriter json, BatchRecord batch)
    {
        var finished = batch.Succeeded + batch.Failed + batch.Cancelled + batch.Expired;
        json.WriteStartObject();
        json.WriteString("id", batch.Id);
        json.WriteString("door", batch.Door switch
        {
            BatchDoor.OpenAI => "openai",
            BatchDoor.Inline => "inline",
            BatchDoor.Anthropic => "anthropic",
            _ => "run",
        });
        json.WriteString("status", Words.Status(batch));
        json.WriteString("model", batch.Model);
        json.WriteString("endpoint", batch.Endpoint);
        json.WriteNumber("total", batch.Total);
        json.WriteNumber("succeeded", batch.Succeeded);
        json.WriteNumber("failed", batch.Failed);
        json.WriteNumber("cancelled", batch.Cancelled);
        json.WriteNumber("expired", batch.Expired);
        json.WriteNumber("finished", finished);
        json.WriteNumber("percent", batch.Total == 0 ? 0 : Math.Round(100.0 * finished / batch.Total, 1));
        json.WriteNumber("input_tokens", batch.InputTokens);
        json.WriteNumber("output_tokens", batch.OutputTokens);
        json.WriteNumber("cost_usd", Cost.ToUsd(batch.CostNanos));
        json.WriteNumber("created_at", batch.CreatedAt.ToUnixTimeSeconds());
        OpenAIJson.WriteTime(json, "in_progress_at", batch.InProgressAt);
        OpenAIJson.WriteTime(json, "ended_at", EndedAt(batch));
        json.WriteStartObject("metadata");
        foreach (var (key, value) in batch.Metadata)
        {
            json.WriteString(key, value);
        }

        json.WriteEndObject();
        json.WriteEndObject();
    }

    private static void WriteLatency(Utf8JsonWriter json, IReadOnlyList<int> sorted)
    {
        json.WriteStartObject("latency_ms");
        json.WriteNumber("count", sorted.Count);
        foreach (var (name, share) in new[] { ("p50", 0.50), ("p90", 0.90), ("p99", 0.99), ("max", 1.0) })
        {
            if (sorted.Count == 0)
            {
                json.WriteNull(name);
            }
            else
            {
                json.WriteNumber(name, sorted[Math.Clamp((int)Math.Ceiling(share * sorted.Count) - 1, 0, sorted.Count - 1)]);
            }
        }

        json.WriteEndObject();
    }
}
