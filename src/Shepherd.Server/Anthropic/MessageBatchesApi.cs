using System.Buffers;
using System.IO.Pipelines;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Shepherd.Engine.Batches;
using Shepherd.Engine.Formats;
using Shepherd.Engine.Model;
using Shepherd.Server.Batches;
using Shepherd.Server.Http;

namespace Shepherd.Server.Anthropic;

/// <summary><c>/v1/messages/batches</c>: the Anthropic Message Batches API over the same engine.</summary>
internal sealed class MessageBatchesApi(BatchService batches, CreateBodies bodies)
{
    private static readonly TimeSpan Window = TimeSpan.FromHours(24);

    /// <summary>Result lines are sent in pieces of about this size, not one write per line.</summary>
    private const int FlushBytes = 64 * 1024;

    public void Map(IEndpointRouteBuilder app)
    {
        var group = app.MapGroup("/v1/messages/batches");
        group.MapPost("/", CreateAsync);
        group.MapGet("/", ListAsync);
        group.MapGet("/{id}", GetAsync);
        group.MapPost("/{id}/cancel", CancelAsync);
        group.MapDelete("/{id}", DeleteAsync);
        group.MapGet("/{id}/results", ResultsAsync);
    }

    private async Task<JsonBody> GetAsync(string id, Caller caller, HttpRequest request, CancellationToken cancellationToken) =>
        Answer(request, await batches.GetAsync(caller, id, BatchDoor.Anthropic, cancellationToken));

    private async Task<JsonBody> CancelAsync(string id, Caller caller, HttpRequest request, CancellationToken cancellationToken)
    {
        var batch = await batches.GetAsync(caller, id, BatchDoor.Anthropic, cancellationToken);
        // Cancelling an ended batch answers it as it is, as Anthropic does.
        return Answer(request, batch.HasEnded ? batch : await batches.CancelAsync(batch, cancellationToken));
    }

    private async Task<JsonBody> DeleteAsync(string id, Caller caller, CancellationToken cancellationToken)
    {
        var batch = await batches.GetAsync(caller, id, BatchDoor.Anthropic, cancellationToken);
        if (!batch.HasEnded)
        {
            throw ApiException.BadRequest($"Message batch '{batch.Id}' is still {ProcessingStatus(batch)}; cancel it and delete it once it has ended.");
        }

        await batches.DeleteAsync(batch, cancellationToken);
        return new JsonBody(json =>
        {
            json.WriteStartObject();
            json.WriteString("id", batch.Id);
            json.WriteString("type", "message_batch_deleted");
            json.WriteEndObject();
        });
    }

    private async Task<JsonBody> CreateAsync(Caller caller, HttpRequest request, CancellationToken cancellationToken)
    {
        var idempotencyKey = Fields.IdempotencyKey(request);
        using var body = await bodies.ReadAsync(request, cancellationToken);
        Fields.OnlyKnown(body.Fields, "requests");
        if (!body.HasRequests || body.RequestCount == 0)
        {
            throw ApiException.BadRequest("\"requests\" is required and holds 1 to " + bodies.MaxRequests + " requests.", "requests");
        }

        var created = new NewBatch(BatchIds.New("msgbatch_"), null, BatchEndpoints.Messages, CompletionWindow: Window)
        {
            Owner = caller.Owner, Door = BatchDoor.Anthropic, CompletionWindowText = "24h", IdempotencyKey = idempotencyKey, BodySha256 = body.Sha256,
            // The door has no field for a mode: the server's configuration gives its batches one.
            Mode = batches.ModeOf(BatchDoor.Anthropic, null, "requests", null, BatchEndpoints.Messages, hasDeadline: true),
            Cache = batches.CacheUseOf(null, "requests", null, "requests"),
        };
        var batch = await batches.CreateAndImportAsync(created, body.SpoolPath, BatchEndpoints.Messages, [], caller, cancellationToken);
        if (batch.Format != InputFormat.Anthropic)
        {
            await batches.DeleteAsync(batch, cancellationToken);
            throw ApiException.BadRequest("Each request needs \"custom_id\" and \"params\" (the Messages API body).", "requests");
        }

        return Answer(request, batch);
    }

    private async Task<JsonBody> ListAsync(Caller caller, HttpRequest request, CancellationToken cancellationToken)
    {
        var query = request.Query;
        var before = Fields.Text(query, "before_id");
        var after = Fields.Text(query, "after_id");
        if (before is not null && after is not null)
        {
            throw ApiException.BadRequest("Give before_id or after_id, not both.", "before_id");
        }

        var page = await batches.ListAsync(caller, BatchDoor.Anthropic,
            new PageRequest(Fields.Int(query, "limit", 20, 1, 1000), after, before), cancellationToken);
        var root = Root(request);
        return new JsonBody(json =>
        {
            json.WriteStartObject();
            json.WriteStartArray("data");
            foreach (var batch in page.Items)
            {
                WriteBatch(json, batch, root);
            }

            json.WriteEndArray();
            json.WriteString("first_id", page.Items.Count > 0 ? page.Items[0].Id : null);
            json.WriteString("last_id", page.Items.Count > 0 ? page.Items[^1].Id : null);
            json.WriteBoolean("has_more", page.HasMore);
            json.WriteEndObject();
        });
    }

    private async Task ResultsAsync(string id, Caller caller, HttpResponse response, CancellationToken cancellationToken)
    {
        var batch = await batches.GetAsync(caller, id, BatchDoor.Anthropic, cancellationToken);
        if (!batch.HasEnded)
        {
            throw ApiException.BadRequest($"Message batch '{batch.Id}' is still {ProcessingStatus(batch)}; its results can be read once it has ended.");
        }

        response.ContentType = "application/x-jsonl";
        using var lines = new ResultLineWriter(batch.Format, batch.Id);
        var output = response.BodyWriter;
        var unflushed = 0L;
        await foreach (var item in batches.ResultsAsync(batch, 0, cancellationToken))
        {
            unflushed += Append(output, lines.Format(item));
            if (unflushed >= FlushBytes)
            {
                await output.FlushAsync(cancellationToken);
                unflushed = 0;
            }
        }
    }

    private static long Append(PipeWriter output, ReadOnlyMemory<byte> line)
    {
        output.Write(line.Span);
        output.Write("\n"u8);
        return line.Length + 1;
    }

    private static JsonBody Answer(HttpRequest request, BatchRecord batch)
    {
        var root = Root(request);
        return new JsonBody(json => WriteBatch(json, batch, root));
    }

    /// <summary>This server's own address as the client reached it, for the absolute <c>results_url</c>.</summary>
    private static string Root(HttpRequest request) => $"{request.Scheme}://{request.Host}";

    private static string ProcessingStatus(BatchRecord batch) => batch.Status switch
    {
        BatchStatus.Cancelling => "canceling",
        _ when batch.HasEnded => "ended",
        _ => "in_progress",
    };

    private static void WriteBatch(Utf8JsonWriter json, BatchRecord batch, string root)
    {
        json.WriteStartObject();
        json.WriteString("id", batch.Id);
        json.WriteString("type", "message_batch");
        json.WriteString("processing_status", ProcessingStatus(batch));
        // As Anthropic counts: every request is processing until the whole batch has ended.
        var ended = batch.HasEnded;
        json.WriteStartObject("request_counts");
        json.WriteNumber("processing", ended ? batch.Total - batch.Finished : batch.Total);
        json.WriteNumber("succeeded", ended ? batch.Succeeded : 0);
        json.WriteNumber("errored", ended ? batch.Failed : 0);
        json.WriteNumber("canceled", ended ? batch.Cancelled : 0);
        json.WriteNumber("expired", ended ? batch.Expired : 0);
        json.WriteEndObject();
        WriteTime(json, "created_at", batch.CreatedAt);
        WriteTime(json, "expires_at", batch.ExpiresAt);
        WriteTime(json, "ended_at", batch.HasEnded ? batch.CompletedAt ?? batch.CancelledAt ?? batch.ExpiredAt ?? batch.FailedAt : null);
        WriteTime(json, "cancel_initiated_at", batch.CancellingAt);
        json.WriteNull("archived_at");
        json.WriteString("results_url", batch.HasEnded ? $"{root}/v1/messages/batches/{batch.Id}/results" : null);
        json.WriteEndObject();
    }

    private static void WriteTime(Utf8JsonWriter json, string name, DateTimeOffset? at)
    {
        if (at is { } time)
        {
            json.WriteString(name, time.UtcDateTime);
        }
        else
        {
            json.WriteNull(name);
        }
    }
}
