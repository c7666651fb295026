using System.Text;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.AspNetCore.WebUtilities;
using Microsoft.Net.Http.Headers;
using Shepherd.Engine.Model;
using Shepherd.Server.Batches;
using Shepherd.Server.Http;

namespace Shepherd.Server.OpenAI;

/// <summary>
/// <c>/v1/files</c>: uploads are streamed from the multipart body straight into the store's
/// file folder, so a 200 MB file never sits in memory.
/// </summary>
internal sealed class FilesApi(FileService files)
{
    private const int MaxFilenameLength = 255;
    private const int MaxFieldBytes = 1024;

    public void Map(IEndpointRouteBuilder app)
    {
        var group = app.MapGroup("/v1/files");
        group.MapPost("/", UploadAsync);
        group.MapGet("/", ListAsync);
        group.MapGet("/{id}", GetAsync);
        group.MapGet("/{id}/content", ContentAsync);
        group.MapDelete("/{id}", DeleteAsync);
    }

    private async Task<JsonBody> GetAsync(string id, Caller caller, CancellationToken cancellationToken)
    {
        var file = await files.GetAsync(caller, id, cancellationToken);
        return new JsonBody(json => OpenAIJson.WriteFile(json, file));
    }

    private async Task<IResult> ContentAsync(string id, Caller caller, CancellationToken cancellationToken)
    {
        var file = await files.GetAsync(caller, id, cancellationToken);
        var content = await files.OpenAsync(file, cancellationToken);
        return Results.Stream(content, "application/octet-stream", file.Filename);
    }

    private async Task<JsonBody> DeleteAsync(string id, Caller caller, CancellationToken cancellationToken)
    {
        var file = await files.GetAsync(caller, id, cancellationToken);
        await files.DeleteAsync(file, cancellationToken);
        return new JsonBody(json =>
        {
            json.WriteStartObject();
            json.WriteString("id", file.Id);
            json.WriteString("object", "file");
            json.WriteBoolean("deleted", true);
            json.WriteEndObject();
        });
    }

    private async Task<JsonBody> ListAsync(Caller caller, HttpRequest request, CancellationToken cancellationToken)
    {
        var query = request.Query;
        var oldestFirst = Fields.Text(query, "order") switch
        {
            null or "desc" => false,
            "asc" => true,
            var order => throw ApiException.BadRequest($"order \"{order}\" is not one of \"asc\" (oldest first) and \"desc\" (newest first, the default).", "order", "invalid_parameter"),
        };
        var limit = Fields.Int(query, "limit", 10_000, 1, 10_000);
        var page = await files.ListAsync(caller, Fields.Text(query, "purpose"), new PageRequest(limit, Fields.Text(query, "after"), OldestFirst: oldestFirst), cancellationToken);
        return new JsonBody(json => OpenAIJson.WriteList(json, page, f => f.Id, OpenAIJson.WriteFile));
    }

    private async Task<JsonBody> UploadAsync(Caller caller, HttpRequest request, CancellationToken cancellationToken)
    {
        if (!MediaTypeHeaderValue.TryParse(request.ContentType, out var contentType)
            || !contentType.MediaType.Equals("multipart/form-data", StringComparison.OrdinalIgnoreCase)
            || HeaderUtilities.RemoveQuotes(contentType.Boundary).Value is not { Length: > 0 } boundary)
        {
            throw ApiException.BadRequest("Upload a file as multipart/form-data with the fields \"file\" and \"purpose\".", "file");
        }

        var reader = new MultipartReader(boundary, request.Body) { BodyLengthLimit = null };
        string? purpose = null;
        FileRecord? file = null;
        try
        {
            while (await reader.ReadNextSectionAsync(cancellationToken) is { } section)
            {
                if (!ContentDispositionHeaderValue.TryParse(section.ContentDisposition, out var disposition) || !disposition.DispositionType.Equals("form-data", StringComparison.OrdinalIgnoreCase))
                {
                    throw ApiException.BadRequest("Every part of the upload needs a form-data Content-Disposition.", "file");
                }

                var name = HeaderUtilities.RemoveQuotes(disposition.Name).Value;
                if (name == "file" && disposition.IsFileDisposition())
                {
                    if (file is not null)
                    {
                        throw ApiException.BadRequest("Upload one file per call.", "file");
                    }

                    CheckPurpose(purpose);
                    var filename = HeaderUtilities.RemoveQuotes(disposition.FileNameStar.HasValue ? disposition.FileNameStar : disposition.FileName).Value;
                    if (string.IsNullOrWhiteSpace(filename) || filename.Length > MaxFilenameLength)
                    {
                        throw ApiException.BadRequest($"The file needs a name of 1 to {MaxFilenameLength} characters.", "file");
                    }

                    file = await files.AddAsync(caller, Path.GetFileName(filename), section.Body, cancellationToken);
                }
                else if (name == "purpose")
                {
                    purpose = await ReadFieldAsync(section, cancellationToken);
                    CheckPurpose(purpose);
                }
                else
                {
                    // Fields this server does not use (such as an expiry policy) are read past.
                    await section.Body.CopyToAsync(Stream.Null, cancellationToken);
                }
            }

            if (file is null)
            {
                throw ApiException.BadRequest("The upload has no \"file\" part.", "file");
            }

            if (purpose is null)
            {
                throw ApiException.BadRequest("\"purpose\" is required; upload batch input with purpose \"batch\".", "purpose");
            }

            return new JsonBody(json => OpenAIJson.WriteFile(json, file));
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            if (file is not null)
            {
                // A refused upload leaves no file behind.
                await files.DeleteAsync(file, CancellationToken.None);
            }

            if (ex is InvalidDataException or (IOException and not BadHttpRequestException))
            {
                throw ApiException.BadRequest($"The multipart body is malformed: {ex.Message}", "file");
            }

            throw;
        }
    }

    private static void CheckPurpose(string? purpose)
    {
        if (purpose is not null and not "batch")
        {
            throw ApiException.BadRequest($"purpose \"{purpose}\" is not supported here; upload batch input with purpose \"batch\".", "purpose");
        }
    }

    private static async Task<string> ReadFieldAsync(MultipartSection section, CancellationToken cancellationToken)
    {
        var buffer = new byte[MaxFieldBytes + 1];
        var length = 0;
        int read;
        while ((read = await section.Body.ReadAsync(buffer.AsMemory(length), cancellationToken)) > 0)
        {
            length += read;
            if (length > MaxFieldBytes)
            {
                throw ApiException.BadRequest($"A form field may be at most {MaxFieldBytes} bytes long.", "purpose");
            }
        }

        return Encoding.UTF8.GetString(buffer, 0, length);
    }
}
