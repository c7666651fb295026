using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Shepherd.Engine.Formats;
using Shepherd.Engine.Model;
using Shepherd.Server.Batches;
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
internal sealed class DashboardApi(BatchService batches, TimeProvider time)
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

    public void Map(IEndpointRouteBuilder app)
    {
        app.MapGet("/", (HttpResponse response) => Asset(response, "index.html"));
        app.MapGet("/dashboard/{name}", Asset);
        var group = app.MapGroup("/v1/dashboard/batches");
        group.MapGet("/", ListAsync);
        group.MapGet("/{id}", BatchAsync);
        group.MapPost("/{id}/cancel", CancelAsync);
        group.MapGet("/{id}/download", DownloadAsync);
    }

    private static IResult Asset(HttpResponse response, string name)
    {
        if (!Assets.TryGetValue(name, out var contentType) || typeof(DashboardApi).Assembly.GetManifestResourceStream("dashboard/" + name) is not { } content)
        {
            throw ApiException.NotFound($"There is no dashboard file '{name}'.");
        }

        response.Headers.CacheControl = "no-cache";
        return Results.Stream(content, contentType);
    }

    private async Task<JsonBody> CancelAsync(string id, Caller caller, CancellationToken cancellationToken)
    {
        var batch = await batches.CancelAsync(await OwnBatchAsync(caller, id, cancellationToken), cancellationToken);
        return new JsonBody(json => WriteBatch(json, batch));
    }

    private async Task<JsonBody> ListAsync(Caller caller, HttpRequest request, CancellationToken cancellationToken)
    {
        var limit = Fields.Int(request.Query, "limit", 100, 1, 500);
        var page = await batches.ListAsync(caller, BatchDoor.OpenAI, new PageRequest(limit), cancellationToken);
        return new JsonBody(json =>
        {
            json.WriteStartObject();
            json.WriteArray("data", page.Items, WriteBatch);
            json.WriteBoolean("has_more", page.HasMore);
            json.WriteEndObject();
        });
    }

    private async Task<JsonBody> BatchAsync(string id, Caller caller, CancellationToken cancellationToken)
    {
        var batch = await OwnBatchAsync(caller, id, cancellationToken);
        var from = batch.InProgressAt ?? batch.CreatedAt;
        var to = batch.EndedAt ?? time.GetUtcNow();
        var seconds = Math.Max(1, (to - from).TotalSeconds);
        var bucket = BucketSeconds.FirstOrDefault(width => seconds / width <= 120, BucketSeconds[^1]);
        var activity = await batches.ActivityAsync(batch, TimeSpan.FromSeconds(bucket), cancellationToken);
        var lanes = await batches.LanesOfAsync(batch, all: true, cancellationToken);
        return new JsonBody(json =>
        {
            json.WriteStartObject();
            json.WritePropertyName("batch");
            WriteBatch(json, batch);
            json.WriteNumber("bucket_seconds", bucket);
            json.WriteObjects("timeline", activity.Timeline, static (json, point) =>
            {
                json.WriteNumber("t", point.Start.ToUnixTimeSeconds());
                json.WriteNumber("requests", point.Requests);
                json.WriteNumber("tokens", point.Tokens);
                json.WriteNumber("failed", point.Failed);
            });
            json.WriteObjects("errors", activity.Errors, static (json, error) =>
            {
                json.WriteString("kind", error.Kind);
                json.WriteNumber("count", error.Count);
            });
            // Why the input was refused, as shepherd status lists it: a refused batch has no requests to fail.
            json.WriteArray("input_errors", batch.Errors, static (json, error) => error.WriteTo(json));
            WriteLatency(json, activity.LatenciesMs);
            json.WriteArray("lanes", lanes, LaneJson.Write);
            json.WriteEndObject();
        });
    }

    private async Task DownloadAsync(string id, Caller caller, HttpRequest request, HttpResponse response, CancellationToken cancellationToken)
    {
        var batch = await OwnBatchAsync(caller, id, cancellationToken);
        var kind = Fields.Text(request.Query, "kind") ?? "results";
        if (kind is not ("results" or "errors"))
        {
            throw ApiException.BadRequest($"kind must be 'results' or 'errors'; got '{kind}'.", "kind");
        }

        response.ContentType = "application/jsonl";
        response.Headers.ContentDisposition = $"attachment; filename=\"{batch.Id}_{kind}.jsonl\"";
        var body = response.Body;
        await batches.ExportAsync(batch, kind == "results" ? body : Stream.Null, kind == "errors" ? body : Stream.Null, cancellationToken);
    }

    /// <summary>The caller's batch, whichever door it came in by, or a 404.</summary>
    private Task<BatchRecord> OwnBatchAsync(Caller caller, string id, CancellationToken cancellationToken) =>
        batches.GetAsync(caller, id, BatchDoor.OpenAI, cancellationToken);

    private static void WriteBatch(Utf8JsonWriter json, BatchRecord batch)
    {
        json.WriteStartObject();
        json.WriteString("id", batch.Id);
        json.WriteString("door", batch.Door switch
        {
            BatchDoor.OpenAI => "openai",
            BatchDoor.Inline => "inline",
            BatchDoor.Anthropic => "anthropic",
            BatchDoor.Gateway => "gateway",
            _ => "run",
        });
        json.WriteString("status", BatchStatusWords.Of(batch));
        json.WriteString("model", batch.Model);
        json.WriteString("endpoint", batch.Endpoint);
        BatchCounts.Of(batch).WriteProgress(json);
        json.WriteNumber("created_at", batch.CreatedAt.ToUnixTimeSeconds());
        OpenAIJson.WriteTime(json, "in_progress_at", batch.InProgressAt);
        OpenAIJson.WriteTime(json, "ended_at", batch.EndedAt);
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
