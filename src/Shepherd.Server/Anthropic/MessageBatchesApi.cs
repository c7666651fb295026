using System.Buffers;
using System.IO.Pipelines;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Shepherd.Engine.Batches;
using Shepherd.Engine.Formats;
using Shepherd.Engine.Model;
using Shepherd.Server.Hosting;
using Shepherd.Server.Http;

namespace Shepherd.Server.Anthropic;

/// <summary><c>/v1/messages/batches</c>: the Anthropic Message Batches API over the same engine.</summary>
internal sealed class MessageBatchesApi(ServerCore core)
{
    private static readonly BatchDoor[] Doors = [BatchDoor.Anthropic];
    private static readonly TimeSpan Window = TimeSpan.FromHours(24);

    /// <summary>Result lines are sent in pieces of about this size, not one write per line.</summary>
    private const int FlushBytes = 64 * 1024;

    public void Map(WebApplication app)
    {
        app.MapPost("/v1/messages/batches", (Delegate)CreateAsync);
        app.MapGet("/v1/messages/batches", (Delegate)ListAsync);
        app.MapGet("/v1/messages/batches/{id}", async (HttpContext context, string id) =>
            Answer(context, await core.GetBatchAsync(Caller.Of(context), id, BatchDoor.Anthropic, context.RequestAborted)));
        app.MapPost("/v1/messages/batches/{id}/cancel", async (HttpContext context, string id) =>
        {
            var batch = await core.GetBatchAsync(Caller.Of(context), id, BatchDoor.Anthropic, context.RequestAborted);
            // Cancelling an ended batch answers it as it is, as Anthropic does.
            return Answer(context, batch.HasEnded ? batch : await core.CancelAsync(batch, context.RequestAborted));
        });
        app.MapDelete("/v1/messages/batches/{id}", async (HttpContext context, string id) =>
        {
            var batch = await core.GetBatchAsync(Caller.Of(context), id, BatchDoor.Anthropic, context.RequestAborted);
            if (!batch.HasEnded)
            {
                throw ApiException.BadRequest($"Message batch '{batch.Id}' is still {ProcessingStatus(batch)}; cancel it and delete it once it has ended.");
            }

            await core.Store.DeleteBatchAsync(batch.Id, context.RequestAborted);
            return new JsonBody(json =>
            {
                json.WriteStartObject();
                json.WriteString("id", batch.Id);
                json.WriteString("type", "message_batch_deleted");
                json.WriteEndObject();
            });
        });
        app.MapGet("/v1/messages/batches/{id}/results", ResultsAsync);
    }

    private async Task<IResult> CreateAsync(HttpContext context)
    {
        var caller = Caller.Of(context);
        var idempotencyKey = Fields.IdempotencyKey(context.Request);
        using var body = await CreateBody.ReadAsync(context.Request.Body, core.Paths.SpoolFolder, core.Options.MaxCreateRequests, core.Importers.MaxLineBytes, context.RequestAborted);
        Fields.OnlyKnown(body.Fields, "requests");
        if (!body.HasRequests || body.RequestCount == 0)
        {
            throw ApiException.BadRequest("\"requests\" is required and holds 1 to " + core.Options.MaxCreateRequests + " requests.", "requests");
        }

        var created = new NewBatch(BatchIds.New("msgbatch_"), null, BatchEndpoints.Messages, CompletionWindow: Window)
        {
            Owner = caller.Owner, Door = BatchDoor.Anthropic, CompletionWindowText = "24h", IdempotencyKey = idempotencyKey, BodySha256 = body.Sha256,
        };
        var batch = await core.CreateAndImportAsync(created, body.SpoolPath, BatchEndpoints.Messages, [], caller, context.RequestAborted);
        if (batch.Format != InputFormat.Anthropic)
        {
            await core.Store.DeleteBatchAsync(batch.Id, context.RequestAborted);
            throw ApiException.BadRequest("Each request needs \"custom_id\" and \"params\" (the Messages API body).", "requests");
        }

        return Answer(context, batch);
    }

    private async Task<IResult> ListAsync(HttpContext context)
    {
        var query = context.Request.Query;
        var before = Fields.Text(query, "before_id");
        var after = Fields.Text(query, "after_id");
        if (before is not null && after is not null)
        {
            throw ApiException.BadRequest("Give before_id or after_id, not both.", "before_id");
        }

        var page = await core.Store.ListBatchesAsync(Caller.Of(context).Listing, Doors,
            new PageRequest(Fields.Int(query, "limit", 20, 1, 1000), after, before), context.RequestAborted);
        var root = Root(context);
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

    private async Task ResultsAsync(HttpContext context, string id)
    {
        var batch = await core.GetBatchAsync(Caller.Of(context), id, BatchDoor.Anthropic, context.RequestAborted);
        if (!batch.HasEnded)
        {
            throw ApiException.BadRequest($"Message batch '{batch.Id}' is still {ProcessingStatus(batch)}; its results can be read once it has ended.");
        }

        context.Response.ContentType = "application/x-jsonl";
        using var lines = new ResultLineWriter(batch.Format, batch.Id);
        var output = context.Response.BodyWriter;
        var unflushed = 0L;
        await foreach (var item in core.Store.ReadResultsAsync(batch.Id, 0, context.RequestAborted))
        {
            unflushed += Append(output, lines.Format(item));
            if (unflushed >= FlushBytes)
            {
                await output.FlushAsync(context.RequestAborted);
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

    private static JsonBody Answer(HttpContext context, BatchRecord batch)
    {
        var root = Root(context);
        return new JsonBody(json => WriteBatch(json, batch, root));
    }

    /// <summary>This server's own address as the client reached it, for the absolute <c>results_url</c>.</summary>
    private static string Root(HttpContext context) => $"{context.Request.Scheme}://{context.Request.Host}";

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
