using System.Runtime.CompilerServices;
using System.Text;
using System.Text.Json;

namespace Shepherd.Client.Http;

/// <summary>JSONL downloads, read as they arrive: one line in memory at a time, never the whole body.</summary>
internal static class JsonLines
{
    /// <summary>The JSON lines the GET of <paramref name="path"/> answers, blank lines skipped.</summary>
    public static async IAsyncEnumerable<JsonElement> GetJsonLinesAsync(this ApiPipeline pipeline, string path, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        using var response = await pipeline.SendAsync(() => pipeline.Request(HttpMethod.Get, path), cancellationToken, streamed: true);
        await using var stream = await response.Content.ReadAsStreamAsync(cancellationToken);
        using var reader = new StreamReader(stream, Encoding.UTF8);
        while (await reader.ReadLineAsync(cancellationToken) is { } text)
        {
            if (!string.IsNullOrWhiteSpace(text))
            {
                using var document = JsonDocument.Parse(text);
                yield return document.RootElement.Clone();
            }
        }
    }
}
