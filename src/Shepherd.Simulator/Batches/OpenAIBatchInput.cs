using System.Text;
using System.Text.Json;

namespace Shepherd.Simulator.Batches;

/// <summary>A checked batch create: the input file, the endpoint, the metadata and the requests of the file's lines.</summary>
/// <param name="InputFileId">The uploaded file.</param>
/// <param name="Endpoint">The endpoint every line goes to.</param>
/// <param name="Metadata">The client's metadata; null for none.</param>
/// <param name="Model">The model of the first line, if it names one.</param>
/// <param name="Requests">The lines, in the file's order.</param>
internal sealed record OpenAIBatchInput(string InputFileId, string Endpoint, IReadOnlyList<KeyValuePair<string, string>>? Metadata, string? Model, IReadOnlyList<BatchRequest> Requests)
{
    /// <summary>OpenAI's limit on the requests of one batch.</summary>
    public const int MaxLines = 50_000;

    private static readonly string[] Endpoints = ["/v1/chat/completions", "/v1/embeddings", "/v1/completions", "/v1/responses"];

    /// <summary>
    /// Reads the body of <c>POST /v1/batches</c> and the file it names; answers the refusal (400,
    /// or 404 for an unknown file) of the first problem, or null when <paramref name="input"/> holds the batch.
    /// </summary>
    public static SimulatedResponse? Read(byte[] body, BatchBook book, out OpenAIBatchInput input)
    {
        input = null!;
        JsonElement root;
        try
        {
            using var document = JsonDocument.Parse(body);
            root = document.RootElement.Clone();
        }
        catch (JsonException ex)
        {
            return OpenAIBatchApi.Refused(400, $"The body is not valid JSON: {ex.Message}");
        }

        if (root.ValueKind != JsonValueKind.Object)
        {
            return OpenAIBatchApi.Refused(400, "The body must be a JSON object.");
        }

        if (Text(root, "input_file_id") is not { } fileId)
        {
            return OpenAIBatchApi.Refused(400, "input_file_id is required.", param: "input_file_id");
        }

        if (Text(root, "endpoint") is not { } endpoint || !Endpoints.Contains(endpoint))
        {
            return OpenAIBatchApi.Refused(400, $"endpoint must be one of {string.Join(", ", Endpoints)}.", param: "endpoint");
        }

        if (Text(root, "completion_window") != "24h")
        {
            return OpenAIBatchApi.Refused(400, "completion_window must be \"24h\".", param: "completion_window");
        }

        if (ReadMetadata(root, out var metadata) is { } badMetadata)
        {
            return OpenAIBatchApi.Refused(400, badMetadata, param: "metadata");
        }

        if (book.File(fileId) is not { } file)
        {
            return OpenAIBatchApi.Refused(404, $"No such File object: {fileId}", param: "input_file_id");
        }

        if (file.Purpose != "batch")
        {
            return OpenAIBatchApi.Refused(400, $"File {fileId} was not uploaded for batches (its purpose is {file.Purpose}).", param: "input_file_id");
        }

        if (Lines(file.Content, endpoint, out var requests, out var model) is { } badLine)
        {
            return badLine;
        }

        input = new OpenAIBatchInput(fileId, endpoint, metadata, model, requests);
        return null;
    }

    /// <summary>The requests of a JSONL file, each checked; the refusal of the first bad line, with its 1-based number.</summary>
    private static SimulatedResponse? Lines(byte[] content, string endpoint, out List<BatchRequest> requests, out string? model)
    {
        requests = [];
        model = null;
        var seen = new HashSet<string>(StringComparer.Ordinal);
        var number = 0;
        foreach (var text in Encoding.UTF8.GetString(content).Split('\n'))
        {
            number++;
            if (string.IsNullOrWhiteSpace(text))
            {
                continue;
            }

            JsonElement line;
            try
            {
                using var document = JsonDocument.Parse(text);
                line = document.RootElement.Clone();
            }
            catch (JsonException)
            {
                return LineRefused(number, "invalid_json_line", "is not valid JSON.");
            }

            if (line.ValueKind != JsonValueKind.Object || Text(line, "custom_id") is not { } customId
                || Text(line, "method") != "POST" || Text(line, "url") is not { } url
                || !line.TryGetProperty("body", out var request) || request.ValueKind != JsonValueKind.Object)
            {
                return LineRefused(number, "invalid_json_line", "needs a string custom_id, method \"POST\", a url and a JSON object body.");
            }

            if (url != endpoint)
            {
                return LineRefused(number, "url_mismatch", $"has url {url}; every line's url must be the batch's endpoint {endpoint}.");
            }

            if (!seen.Add(customId))
            {
                return LineRefused(number, "duplicate_custom_id", $"repeats the custom_id \"{customId}\"; each must be unique in the batch.");
            }

            if (requests.Count == MaxLines)
            {
                return LineRefused(number, "too_many_tasks", $"is beyond the {MaxLines} requests a batch may hold.");
            }

            model ??= Text(request, "model");
            requests.Add(new BatchRequest(customId, Encoding.UTF8.GetBytes(request.GetRawText())));
        }

        return requests.Count == 0 ? OpenAIBatchApi.Refused(400, "The input file holds no requests.", param: "input_file_id", code: "empty_file") : null;
    }

    /// <summary>Metadata as OpenAI allows it: at most 16 string pairs, keys up to 64 characters and values up to 512; why not, or null.</summary>
    private static string? ReadMetadata(JsonElement root, out IReadOnlyList<KeyValuePair<string, string>>? metadata)
    {
        metadata = null;
        if (!root.TryGetProperty("metadata", out var given) || given.ValueKind == JsonValueKind.Null)
        {
            return null;
        }

        if (given.ValueKind != JsonValueKind.Object)
        {
            return "metadata must be an object of strings.";
        }

        var pairs = new List<KeyValuePair<string, string>>();
        foreach (var pair in given.EnumerateObject())
        {
            if (pair.Value.ValueKind != JsonValueKind.String || pair.Name.Length > 64 || pair.Value.GetString()!.Length > 512)
            {
                return "metadata holds strings, with keys of at most 64 characters and values of at most 512.";
            }

            pairs.Add(new(pair.Name, pair.Value.GetString()!));
        }

        if (pairs.Count > 16)
        {
            return "metadata holds at most 16 pairs.";
        }

        metadata = pairs;
        return null;
    }

    private static SimulatedResponse LineRefused(int line, string code, string problem) =>
        OpenAIBatchApi.Refused(400, $"Line {line} of the input file {problem}", param: "input_file_id", code: code);

    private static string? Text(JsonElement element, string name) =>
        element.TryGetProperty(name, out var value) && value.ValueKind == JsonValueKind.String ? value.GetString() : null;
}
