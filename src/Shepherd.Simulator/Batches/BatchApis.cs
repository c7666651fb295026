using System.Globalization;
using System.Text.Json;
using Microsoft.AspNetCore.WebUtilities;
using Microsoft.Extensions.Primitives;

namespace Shepherd.Simulator.Batches;

/// <summary>
/// The batch APIs of the simulator: OpenAI's <c>/v1/files</c> and <c>/v1/batches</c>, and
/// Anthropic's <c>/v1/messages/batches</c>, over one book of files and jobs.
/// </summary>
internal sealed class BatchApis
{
    private readonly BatchBook _book;
    private readonly OpenAIBatchApi _openAI;
    private readonly AnthropicBatchApi _anthropic;

    public BatchApis(SimulatedProvider provider, SimulatorOptions options, TimeProvider time)
    {
        _book = new BatchBook(time, provider.CountExecution);
        _openAI = new OpenAIBatchApi(_book, provider, options);
        _anthropic = new AnthropicBatchApi(_book, provider, options);
    }

    /// <summary>True for the paths of the batch APIs.</summary>
    public static bool Serve(string path) => Under(path, OpenAIBatchApi.Files) || Under(path, OpenAIBatchApi.Batches) || Under(path, AnthropicBatchApi.Root);

    public Task<SimulatedResponse> AnswerAsync(SimulatedRequest request, CancellationToken cancellationToken) =>
        Under(request.Path, AnthropicBatchApi.Root) ? Task.FromResult(_anthropic.Answer(request)) : _openAI.AnswerAsync(request, cancellationToken);

    public BatchStats Stats() => _book.Stats();

    /// <summary>The segments of <paramref name="path"/> after <paramref name="root"/>, unescaped: <c>["batch_1", "cancel"]</c>.</summary>
    public static string[] Segments(string path, string root) =>
        [.. path[root.Length..].Split('/', StringSplitOptions.RemoveEmptyEntries).Select(Uri.UnescapeDataString)];

    public static Dictionary<string, StringValues> Query(SimulatedRequest request) => QueryHelpers.ParseQuery(request.Query);

    /// <summary>A query's <c>limit</c> between 1 and <paramref name="max"/> (the default when it is not given); null when it is not one.</summary>
    public static int? Limit(Dictionary<string, StringValues> query, int defaultLimit, int max)
    {
        if (!query.TryGetValue("limit", out var text))
        {
            return defaultLimit;
        }

        return int.TryParse(text.ToString(), NumberStyles.None, CultureInfo.InvariantCulture, out var limit) && limit >= 1 && limit <= max
            ? limit
            : null;
    }

    /// <summary>A query's text value, or null when it is not given (or empty).</summary>
    public static string? Text(Dictionary<string, StringValues> query, string name) =>
        query.TryGetValue(name, out var value) && !StringValues.IsNullOrEmpty(value) ? value.ToString() : null;

    /// <summary>
    /// A page of a listing in its envelope, every key always sent: <c>data</c>, <c>first_id</c>,
    /// <c>last_id</c> (the last element's id) and <c>has_more</c>, after OpenAI's <c>"object":"list"</c>.
    /// </summary>
    public static SimulatedResponse List(BatchPage page, bool openAI, Action<Utf8JsonWriter, SimulatedBatch> write) =>
        new(200, [], SimulatedProvider.Write(json =>
        {
            json.WriteStartObject();
            if (openAI)
            {
                json.WriteString("object", "list");
            }

            json.WriteStartArray("data");
            foreach (var batch in page.Items)
            {
                write(json, batch);
            }

            json.WriteEndArray();
            json.WriteString("first_id", page.Items.Count > 0 ? page.Items[0].Id : null);
            json.WriteString("last_id", page.Items.Count > 0 ? page.Items[^1].Id : null);
            json.WriteBoolean("has_more", page.HasMore);
            json.WriteEndObject();
        }));

    private static bool Under(string path, string root) => path == root || (path.StartsWith(root, StringComparison.Ordinal) && path.Length > root.Length && path[root.Length] == '/');
}
