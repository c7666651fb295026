using System.Text;
using System.Text.Json;
using Microsoft.AspNetCore.WebUtilities;
using Microsoft.Net.Http.Headers;

namespace Shepherd.Simulator.Batches;

/// <summary>
/// OpenAI's files and batches on the simulator: upload a JSONL file, create a batch of it, poll,
/// cancel, list, and download the output and error files. Every object is in OpenAI's wire
/// format; every success is 200, as the official SDKs expect. The objects are written here, not
/// with Shepherd's server's writers: the simulator stands for the provider, and a mistake of
/// Shepherd's must not be copied into what it is tested against.
/// </summary>
internal sealed class OpenAIBatchApi(BatchBook book, SimulatedProvider provider, SimulatorOptions options)
{
    public const string Files = "/v1/files";
    public const string Batches = "/v1/batches";

    /// <summary>OpenAI's limit on the bytes of an input file.</summary>
    private const long MaxFileBytes = 200L * 1024 * 1024;

    public async Task<SimulatedResponse> AnswerAsync(SimulatedRequest request, CancellationToken cancellationToken)
    {
        var files = request.Path.StartsWith(Files, StringComparison.Ordinal);
        var rest = BatchApis.Segments(request.Path, files ? Files : Batches);
        return (files, request.Method, rest) switch
        {
            (true, "POST", []) => await UploadAsync(request, cancellationToken),
            (true, "GET", [var id]) => FileAnswer(id, (file, _) => Ok(json => WriteFile(json, file))),
            (true, "GET", [var id, "content"]) => FileAnswer(id, (file, _) => new SimulatedResponse(200, [], file.Content, ContentType: "application/octet-stream")),
            (false, "POST", []) => Create(request),
            (false, "GET", []) => List(request),
            (false, "GET", [var id]) => book.Read(id, BatchDialect.OpenAI, Answer),
            (false, "POST", [var id, "cancel"]) => book.Cancel(id, BatchDialect.OpenAI, Answer),
            (_, _, [] or [_] or [_, "content" or "cancel"]) => Refused(405, $"{request.Method} is not served at {request.Path}."),
            _ => Refused(404, $"Unknown path {request.Path}.", type: "not_found_error"),
        };
    }

    private async Task<SimulatedResponse> UploadAsync(SimulatedRequest request, CancellationToken cancellationToken)
    {
        if (!MediaTypeHeaderValue.TryParse(request.ContentType, out var contentType)
            || !contentType.MediaType.Equals("multipart/form-data", StringComparison.OrdinalIgnoreCase)
            || HeaderUtilities.RemoveQuotes(contentType.Boundary).Value is not { Length: > 0 } boundary)
        {
            return Refused(400, "Upload a file as multipart/form-data with the fields purpose and file.");
        }

        string? purpose = null, filename = null;
        byte[]? content = null;
        try
        {
            var reader = new MultipartReader(boundary, new MemoryStream(request.Body)) { BodyLengthLimit = MaxFileBytes };
            while (await reader.ReadNextSectionAsync(cancellationToken) is { } section)
            {
                if (!ContentDispositionHeaderValue.TryParse(section.ContentDisposition, out var disposition))
                {
                    continue;
                }

                using var data = new MemoryStream();
                await section.Body.CopyToAsync(data, cancellationToken);
                switch (HeaderUtilities.RemoveQuotes(disposition.Name).Value)
                {
                    case "purpose":
                        purpose = Encoding.UTF8.GetString(data.ToArray()).Trim();
                        break;
                    case "file":
                        filename = HeaderUtilities.RemoveQuotes(disposition.FileName).Value is { Length: > 0 } name ? name : disposition.FileNameStar.Value;
                        content = data.ToArray();
                        break;
                }
            }
        }
        catch (Exception ex) when (ex is IOException or InvalidDataException)
        {
            return Refused(400, $"The multipart body could not be read: {ex.Message}");
        }

        if (purpose != "batch")
        {
            return Refused(400, purpose is null
                ? "The field purpose is required."
                : $"The simulator keeps files for batches only: purpose must be \"batch\", not \"{purpose}\".", param: "purpose");
        }

        if (content is null)
        {
            return Refused(400, "The field file is required.", param: "file");
        }

        var file = new SimulatedFile(book.NewId("file-"), filename ?? "upload.jsonl", purpose, book.Now, content);
        book.Add(file);
        return Ok(json => WriteFile(json, file));
    }

    private SimulatedResponse Create(SimulatedRequest request)
    {
        var problem = OpenAIBatchInput.Read(request.Body, book, out var input);
        if (problem is not null)
        {
            return problem;
        }

        var id = book.NewId("batch_");
        var created = book.Now;
        book.Add(new SimulatedBatch(id, BatchDialect.OpenAI, input.Endpoint, provider.DrawLines(id, input.Endpoint, input.Requests, created), created, options)
        {
            InputFileId = input.InputFileId,
            Model = input.Model,
            Metadata = input.Metadata,
        });
        return book.Read(id, BatchDialect.OpenAI, Answer);
    }

    private SimulatedResponse List(SimulatedRequest request)
    {
        var query = BatchApis.Query(request);
        if (BatchApis.Limit(query, 20, 100) is not { } limit)
        {
            return Refused(400, "limit is a whole number from 1 to 100.", param: "limit");
        }

        var after = BatchApis.Text(query, "after");
        return book.Page(BatchDialect.OpenAI, after, null, limit, (page, now) => BatchApis.List(page, openAI: true, (json, batch) => WriteBatch(json, batch, now)))
            ?? Refused(400, $"No batch {after} to list after.", param: "after");
    }

    private SimulatedResponse FileAnswer(string id, Func<SimulatedFile, DateTimeOffset, SimulatedResponse> answer) =>
        book.File(id) is { } file ? answer(file, book.Now) : Refused(404, $"No such File object: {id}", param: "id");

    private static SimulatedResponse Answer(SimulatedBatch? batch, DateTimeOffset now) =>
        batch is null ? Refused(404, "No such batch.", param: "batch_id") : Ok(json => WriteBatch(json, batch, now));

    internal static SimulatedResponse Refused(int status, string message, string? param = null, string? code = null, string type = "invalid_request_error") =>
        SimulatedProvider.Error(status, anthropic: false, type, message, code: code, param: param);

    private static SimulatedResponse Ok(Action<Utf8JsonWriter> write) => new(200, [], SimulatedProvider.Write(write));

    private static void WriteFile(Utf8JsonWriter json, SimulatedFile file)
    {
        json.WriteStartObject();
        json.WriteString("id", file.Id);
        json.WriteString("object", "file");
        json.WriteNumber("bytes", file.Content.LongLength);
        json.WriteNumber("created_at", file.CreatedAt.ToUnixTimeSeconds());
        json.WriteString("filename", file.Filename);
        json.WriteString("purpose", file.Purpose);
        json.WriteString("status", "processed");
        json.WriteNull("status_details");
        json.WriteNull("expires_at");
        json.WriteEndObject();
    }

    /// <summary>The Batch object, as the job stands at <paramref name="now"/>.</summary>
    private static void WriteBatch(Utf8JsonWriter json, SimulatedBatch batch, DateTimeOffset now)
    {
        var ended = batch.HasEnded(now);
        var cancelled = batch.CancelAskedAt is not null;
        var status = !ended ? (cancelled ? "cancelling" : "in_progress") : cancelled ? "cancelled" : batch.Expires ? "expired" : "completed";
        var counts = batch.CountsAt(now);
        json.WriteStartObject();
        json.WriteString("id", batch.Id);
        json.WriteString("object", "batch");
        json.WriteString("endpoint", batch.Endpoint);
        json.WriteString("model", batch.Model);
        json.WriteNull("errors");
        json.WriteString("input_file_id", batch.InputFileId);
        json.WriteString("completion_window", "24h");
        json.WriteString("status", status);
        json.WriteString("output_file_id", batch.OutputFileId);
        json.WriteString("error_file_id", batch.ErrorFileId);
        WriteTime(json, "created_at", batch.CreatedAt);
        WriteTime(json, "in_progress_at", batch.CreatedAt);
        WriteTime(json, "expires_at", batch.ExpiresAt);
        WriteTime(json, "finalizing_at", status == "completed" ? batch.EndsAt : null);
        WriteTime(json, "completed_at", status == "completed" ? batch.EndsAt : null);
        WriteTime(json, "failed_at", null);
        WriteTime(json, "expired_at", status == "expired" ? batch.EndsAt : null);
        WriteTime(json, "cancelling_at", batch.CancelAskedAt);
        WriteTime(json, "cancelled_at", status == "cancelled" ? batch.EndsAt : null);
        json.WriteStartObject("request_counts");
        json.WriteNumber("total", counts.Total);
        json.WriteNumber("completed", counts.Succeeded);
        json.WriteNumber("failed", counts.Errored + counts.Expired + counts.Cancelled);
        json.WriteEndObject();
        json.WriteStartObject("usage");
        json.WriteNumber("input_tokens", counts.InputTokens);
        json.WriteStartObject("input_tokens_details");
        json.WriteNumber("cached_tokens", 0);
        json.WriteEndObject();
        json.WriteNumber("output_tokens", counts.OutputTokens);
        json.WriteStartObject("output_tokens_details");
        json.WriteNumber("reasoning_tokens", 0);
        json.WriteEndObject();
        json.WriteNumber("total_tokens", counts.InputTokens + counts.OutputTokens);
        json.WriteEndObject();
        if (batch.Metadata is null)
        {
            json.WriteNull("metadata");
        }
        else
        {
            json.WriteStartObject("metadata");
            foreach (var (key, value) in batch.Metadata)
            {
                json.WriteString(key, value);
            }

            json.WriteEndObject();
        }

        json.WriteEndObject();
    }

    private static void WriteTime(Utf8JsonWriter json, string name, DateTimeOffset? at)
    {
        if (at is { } time)
        {
            json.WriteNumber(name, time.ToUnixTimeSeconds());
        }
        else
        {
            json.WriteNull(name);
        }
    }
}
