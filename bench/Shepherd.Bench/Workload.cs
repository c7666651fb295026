using System.Text;
using System.Text.Json;

namespace Shepherd.Bench;

/// <summary>A batch of distinct chat requests, as a file in its own temp folder (removed on dispose) and as bodies.</summary>
internal sealed class Workload : IDisposable
{
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
    public static Workload Create(int count, int promptBytes = 0, bool keepBodies = true)
    {
        var padding = new string('x', promptBytes);
        return Create(count, i => $"Label the sentiment of review {i}: arrived late, works well.{padding}", 20, keepBodies);
    }

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

    private static Workload Create(int count, Func<int, string> prompt, int maxTokens, bool keepBodies)
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
            });
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
