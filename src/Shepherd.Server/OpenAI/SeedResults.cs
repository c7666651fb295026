using System.Text.Json;
using Shepherd.Engine.Formats;
using Shepherd.Engine.Model;
using Shepherd.Server.Batches;

namespace Shepherd.Server.OpenAI;

/// <summary>
/// The <c>results</c> that scripts written for other inline batch services read from the status
/// of an ended batch: every request's result line with <c>status</c> <c>"success"</c> for a
/// success (the other words as the results pages have them) and, for a request that did not
/// succeed, the <c>original_prompt</c> to send again. Only for an inline batch that has ended
/// with at most <see cref="MaxRequests"/> requests, so a status stays small: a larger batch
/// leaves it out, and its results are read in pages.
/// </summary>
internal sealed class SeedResults
{
    /// <summary>The most requests a batch may have for its status to carry <c>results</c>.</summary>
    public const int MaxRequests = 1000;

    private static readonly ItemState[] NotSucceeded = [ItemState.Failed, ItemState.Cancelled, ItemState.Expired];

    private readonly BatchRecord _batch;
    private readonly List<ItemResult> _items;
    private readonly Dictionary<string, string?> _prompts;

    private SeedResults(BatchRecord batch, List<ItemResult> items, Dictionary<string, string?> prompts)
    {
        _batch = batch;
        _items = items;
        _prompts = prompts;
    }

    /// <summary>The results of <paramref name="batch"/> for its status, or null when its status does not carry them.</summary>
    public static async Task<SeedResults?> ReadAsync(BatchService batches, BatchRecord batch, CancellationToken cancellationToken)
    {
        if (batch.Door != BatchDoor.Inline || !batch.HasEnded || batch.Total > MaxRequests)
        {
            return null;
        }

        var items = new List<ItemResult>((int)batch.Total);
        await foreach (var item in batches.ResultsAsync(batch, 0, cancellationToken))
        {
            items.Add(item);
        }

        var prompts = new Dictionary<string, string?>(StringComparer.Ordinal);
        await foreach (var request in batches.RequestsAsync(batch, NotSucceeded, cancellationToken))
        {
            prompts[request.CustomId] = PromptOf(batch.Endpoint ?? BatchEndpoints.ChatCompletions, request.Body);
        }

        return new SeedResults(batch, items, prompts);
    }

    /// <summary>Writes <c>results</c> into the batch object being written.</summary>
    public void Write(Utf8JsonWriter json)
    {
        using var lines = new ResultLineWriter(_batch.Format, _batch.Id);
        json.WriteStartArray("results");
        foreach (var item in _items)
        {
            var succeeded = item.State == ItemState.Succeeded;
            BatchesApi.WriteResult(json, lines, item, succeeded ? "success" : null, succeeded ? null : new OriginalPrompt(_prompts.GetValueOrDefault(item.CustomId)));
        }

        json.WriteEndArray();
    }

    /// <summary>
    /// The prompt a request was made of: the text of a body that a <c>prompt</c> makes for the
    /// endpoint (one user message, or the <c>input</c> or <c>prompt</c> field), else null.
    /// </summary>
    internal static string? PromptOf(string endpoint, byte[] body)
    {
        using var document = JsonDocument.Parse(body);
        var root = document.RootElement;
        var field = endpoint switch
        {
            BatchEndpoints.Embeddings or BatchEndpoints.Responses => "input",
            BatchEndpoints.Completions => "prompt",
            _ => null,
        };
        if (field is not null)
        {
            return root.TryGetProperty(field, out var text) && text.ValueKind == JsonValueKind.String ? text.GetString() : null;
        }

        return root.TryGetProperty("messages", out var messages) && messages.ValueKind == JsonValueKind.Array && messages.GetArrayLength() == 1
            && messages[0] is { ValueKind: JsonValueKind.Object } message
            && message.TryGetProperty("role", out var role) && role.ValueEquals("user")
            && message.TryGetProperty("content", out var content) && content.ValueKind == JsonValueKind.String
                ? content.GetString()
                : null;
    }
}

/// <summary>The <c>original_prompt</c> of a result, which may be null.</summary>
internal readonly record struct OriginalPrompt(string? Text);
