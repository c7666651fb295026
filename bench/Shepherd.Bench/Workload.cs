using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace Shepherd.Bench;

/// <summary>A batch of distinct chat requests, as a file in its own temp folder (removed on dispose) and as bodies.</summary>
internal sealed class Workload : IDisposable
{
    private static readonly JsonSerializerOptions LeaveOutNulls = new() { DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull };

    private Workload(string folder, string path, int count, List<byte[]> bodies)
    {
        Folder = folder;
        Path = path;
        Count = count;
        Bodies = bodies;
    }

    public string Folder { get; }

    public string Path { get; }

    /// <summary>The number of requests in the file.</summary>
    public int Count { get; }

    /// <summary>The request bodies; empty when they were not kept.</summary>
    public IReadOnlyList<byte[]> Bodies { get; }

    /// <summary>Small requests: one short review each, padded with <paramref name="promptBytes"/> characters.</summary>
    public static Workload Create(int count, int promptBytes = 0, bool keepBodies = true) => Create(count, Reviews(promptBytes), 20, keepBodies);

    /// <summary>Small requests as <see cref="Create(int, int, bool)"/> makes them, each asking for a stream (<c>"stream": true</c>) of up to <paramref name="maxTokens"/>.</summary>
    public static Workload CreateStreamed(int count, int maxTokens) => Create(count, Reviews(0), maxTokens, keepBodies: true, stream: true);

    /// <summary>Requests with prompts of <paramref name="minWords"/> to <paramref name="maxWords"/> words (a fixed seed) and the given output limit.</summary>
    public static Workload CreateWords(int count, int minWords, int maxWords, int maxTokens, int seed = 7)
    {
        string[] words = ["the", "product", "works", "well", "battery", "life", "is", "great", "price", "fair", "delivery", "was", "fast",
            "quality", "could", "be", "better", "design", "support", "screen", "sound", "comfort", "value", "durable", "easy", "setup"];
        var random = new Random(seed);
        var prompts = Enumerable.Range(0, count)
            .Select(_ => string.Join(' ', Enumerable.Range(0, random.Next(minWords, maxWords + 1)).Select(_ => words[random.Next(words.Length)])))
            .ToList();
        return Create(count, i => prompts[i], maxTokens, keepBodies: true);
    }

    /// <summary>One short review a request, padded with <paramref name="promptBytes"/> characters.</summary>
    private static Func<int, string> Reviews(int promptBytes)
    {
        var padding = new string('x', promptBytes);
        return i => $"Label the sentiment of review {i}: arrived late, works well.{padding}";
    }

    private static Workload Create(int count, Func<int, string> prompt, int maxTokens, bool keepBodies, bool stream = false)
    {
        var folder = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "shepherd-bench", Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(folder);
        var path = System.IO.Path.Combine(folder, "bench.jsonl");
        var bodies = new List<byte[]>(keepBodies ? count : 0);
        using var writer = new StreamWriter(path, false, new UTF8Encoding(false), 1 << 16);
        for (var i = 0; i < count; i++)
        {
            var body = JsonSerializer.Serialize(new
            {
                model = "gpt-4.1-mini",
                messages = new[] { new { role = "user", content = prompt(i) } },
                max_tokens = maxTokens,
                stream = stream ? true : (bool?)null,
                // Usage asked for, as the official .NET SDK asks: the body is the same for every target, so is the answer.
                stream_options = stream ? new { include_usage = true } : null,
            }, LeaveOutNulls);
            if (keepBodies)
            {
                bodies.Add(Encoding.UTF8.GetBytes(body));
            }

            writer.Write($"{{\"custom_id\":\"r{i}\",\"method\":\"POST\",\"url\":\"/v1/chat/completions\",\"body\":{body}}}\n");
        }

        return new Workload(folder, path, count, bodies);
    }

    public void Dispose() => Directory.Delete(Folder, recursive: true);
}
