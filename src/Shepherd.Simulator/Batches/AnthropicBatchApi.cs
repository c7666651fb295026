using System.Buffers;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;

namespace Shepherd.Simulator.Batches;

/// <summary>
/// Anthropic's message batches on the simulator: create with every request in the body, poll,
/// cancel, list (newest first), and read the results as JSONL once the batch has ended. Written
/// apart from Shepherd's server for the reason <see cref="OpenAIBatchApi"/> gives.
/// </summary>
internal sealed partial class AnthropicBatchApi(BatchBook book, SimulatedProvider provider, SimulatorOptions options)
{
    public const string Root = "/v1/messages/batches";

    /// <summary>Anthropic's limit on the requests of one batch.</summary>
    private const int MaxRequests = 100_000;

    public SimulatedResponse Answer(SimulatedRequest request)
    {
        var rest = BatchApis.Segments(request.Path, Root);
        return (request.Method, rest) switch
        {
            ("POST", []) => Create(request),
            ("GET", []) => List(request),
            ("GET", [var id]) => book.Read(id, BatchDialect.Anthropic, (batch, now) => Answer(batch, now, request.BaseUrl)),
            ("POST", [var id, "cancel"]) => book.Cancel(id, BatchDialect.Anthropic, (batch, now) => Answer(batch, now, request.BaseUrl)),
            ("GET", [var id, "results"]) => book.Read(id, BatchDialect.Anthropic, Results),
            (_, [] or [_] or [_, "cancel" or "results"]) => Refused(405, "invalid_request_error", $"{request.Method} is not served at {request.Path}."),
            _ => Refused(404, "not_found_error", $"Unknown path {request.Path}."),
        };
    }

    private SimulatedResponse Create(SimulatedRequest request)
    {
        JsonElement root;
        try
        {
            using var document = JsonDocument.Parse(request.Body);
            root = document.RootElement.Clone();
        }
        catch (JsonException ex)
        {
            return Refused(400, "invalid_request_error", $"The body is not valid JSON: {ex.Message}");
        }

        if (root.ValueKind != JsonValueKind.Object || !root.TryGetProperty("requests", out var given)
            || given.ValueKind != JsonValueKind.Array || given.GetArrayLength() is 0 or > MaxRequests)
        {
            return Refused(400, "invalid_request_error", $"requests: holds 1 to {MaxRequests} requests.");
        }

        var requests = new List<BatchRequest>();
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var item in given.EnumerateArray())
        {
            var at = requests.Count;
            if (item.ValueKind != JsonValueKind.Object || !item.TryGetProperty("custom_id", out var id) || id.ValueKind != JsonValueKind.String
                || !CustomId().IsMatch(id.GetString()!))
            {
                return Refused(400, "invalid_request_error", $"requests.{at}.custom_id: a string of 1 to 64 letters, digits, '_' and '-'.");
            }

            if (!item.TryGetProperty("params", out var parameters) || parameters.ValueKind != JsonValueKind.Object)
            {
                return Refused(400, "invalid_request_error", $"requests.{at}.params: the Messages API body, an object.");
            }

            if (!seen.Add(id.GetString()!))
            {
                return Refused(400, "invalid_request_error", $"requests.{at}.custom_id: \"{id.GetString()}\" is already used in this batch.");
            }

            requests.Add(new BatchRequest(id.GetString()!, Encoding.UTF8.GetBytes(parameters.GetRawText())));
        }

        var batchId = book.NewId("msgbatch_");
        var created = book.Now;
        book.Add(new SimulatedBatch(batchId, BatchDialect.Anthropic, "/v1/messages", provider.DrawLines(batchId, "/v1/messages", requests, created), created, options));
        return book.Read(batchId, BatchDialect.Anthropic, (batch, now) => Answer(batch, now, request.BaseUrl));
    }

    private SimulatedResponse List(SimulatedRequest request)
    {
        var query = BatchApis.Query(request);
        if (BatchApis.Limit(query, 20, 1000) is not { } limit)
        {
            return Refused(400, "invalid_request_error", "limit: a whole number from 1 to 1000.");
        }

        var (before, after) = (BatchApis.Text(query, "before_id"), BatchApis.Text(query, "after_id"));
        if (before is not null && after is not null)
        {
            return Refused(400, "invalid_request_error", "Give before_id or after_id, not both.");
        }

        return book.Page(BatchDialect.Anthropic, after, before, limit, (page, now) => BatchApis.List(page, openAI: false, (json, batch) => WriteBatch(json, batch, now, request.BaseUrl)))
            ?? Refused(400, "invalid_request_error", $"No message batch {before ?? after} to list from.");
    }

    /// <summary>The result lines, in the order of the requests: <c>succeeded</c>, <c>errored</c>, <c>canceled</c> or <c>expired</c>.</summary>
    private static SimulatedResponse Results(SimulatedBatch? batch, DateTimeOffset now)
    {
        if (batch is null)
        {
            return NotFound();
        }

        if (!batch.HasEnded(now))
        {
            return Refused(400, "invalid_request_error", $"Message batch {batch.Id} has not ended; its results can be read once its processing_status is ended.");
        }

        var buffer = new ArrayBufferWriter<byte>();
        foreach (var line in batch.Lines)
        {
            using (var json = new Utf8JsonWriter(buffer))
            {
                WriteResult(json, line, batch.FateOf(line, now));
            }

            buffer.Write("\n"u8);
        }

        return new SimulatedResponse(200, [], buffer.WrittenSpan.ToArray(), ContentType: "application/x-jsonl");
    }

    private static void WriteResult(Utf8JsonWriter json, BatchLine line, LineFate fate)
    {
        json.WriteStartObject();
        json.WriteString("custom_id", line.CustomId);
        json.WriteStartObject("result");
        switch (fate)
        {
            case LineFate.Succeeded:
                json.WriteString("type", "succeeded");
                json.WritePropertyName("message");
                json.WriteRawValue(line.Answer!.Body, skipInputValidation: true);
                break;
            case LineFate.Errored:
                // The line's error envelope, {"type":"error","error":{...}}, with the request's id.
                using (var envelope = JsonDocument.Parse(line.Answer!.Body))
                {
                    json.WriteString("type", "errored");
                    json.WriteStartObject("error");
                    json.WriteString("type", "error");
                    json.WritePropertyName("error");
                    envelope.RootElement.GetProperty("error").WriteTo(json);
                    json.WriteString("request_id", line.Answer.RequestId);
                    json.WriteEndObject();
                }

                break;
            default:
                json.WriteString("type", fate == LineFate.Cancelled ? "canceled" : "expired");
                break;
        }

        json.WriteEndObject();
        json.WriteEndObject();
    }

    private static SimulatedResponse Answer(SimulatedBatch? batch, DateTimeOffset now, Uri? baseUrl) =>
        batch is null ? NotFound() : Ok(json => WriteBatch(json, batch, now, baseUrl));

    /// <summary>The MessageBatch object. As Anthropic counts, every request is processing until the whole batch has ended.</summary>
    private static void WriteBatch(Utf8JsonWriter json, SimulatedBatch batch, DateTimeOffset now, Uri? baseUrl)
    {
        var ended = batch.HasEnded(now);
        var counts = batch.CountsAt(now);
        json.WriteStartObject();
        json.WriteString("id", batch.Id);
        json.WriteString("type", "message_batch");
        json.WriteString("processing_status", ended ? "ended" : batch.CancelAskedAt is null ? "in_progress" : "canceling");
        json.WriteStartObject("request_counts");
        json.WriteNumber("processing", ended ? 0 : counts.Total);
        json.WriteNumber("succeeded", ended ? counts.Succeeded : 0);
        json.WriteNumber("errored", ended ? counts.Errored : 0);
        json.WriteNumber("canceled", ended ? counts.Cancelled : 0);
        json.WriteNumber("expired", ended ? counts.Expired : 0);
        json.WriteEndObject();
        WriteTime(json, "created_at", batch.CreatedAt);
        WriteTime(json, "expires_at", batch.ExpiresAt);
        WriteTime(json, "ended_at", ended ? batch.EndsAt : null);
        WriteTime(json, "cancel_initiated_at", batch.CancelAskedAt);
        json.WriteNull("archived_at");
        var results = $"{Root}/{batch.Id}/results";
        json.WriteString("results_url", !ended ? null : baseUrl is null ? results : new Uri(baseUrl, results).ToString());
        json.WriteEndObject();
    }

    /// <summary>A time as RFC 3339, or null.</summary>
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

    private static SimulatedResponse NotFound() => Refused(404, "not_found_error", "No such message batch.");

    private static SimulatedResponse Refused(int status, string type, string message) => SimulatedProvider.Error(status, anthropic: true, type, message);

    private static SimulatedResponse Ok(Action<Utf8JsonWriter> write) => new(200, [], SimulatedProvider.Write(write));

    [GeneratedRegex("^[a-zA-Z0-9_-]{1,64}$")]
    private static partial Regex CustomId();
}
