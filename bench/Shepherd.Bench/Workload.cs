using System.Text;
using System.Text.Json;

namespace Shepherd.Bench;

/// <summary>A batch of distinct chat requests, as a file in its own temp folder (removed on dispose) and as bodies.</summary>
internal sealed class Workload : IDisposable
{
    private Workload(string folder, string path, List<byte[]> bodies)
    {
        Folder = folder;
        Path = path;
        Bodies = bodies;
    }

    public string Folder { get; }

    public string Path { get; }

    public IReadOnlyList<byte[]> Bodies { get; }

    public static Workload Create(int count, int promptBytes = 0, bool keepBodies = true)
    {
        var folder = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "shepherd-bench", Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(folder);
        var path = System.IO.Path.Combine(folder, "bench.jsonl");
        var bodies = new List<byte[]>(keepBodies ? count : 0);
        var padding = new string('x', promptBytes);
        using var writer = new StreamWriter(path, false, new UTF8Encoding(false), 1 << 16);
        for (var i = 0; i < count; i++)
        {
            var body = JsonSerializer.Serialize(new
            {
                model = "gpt-4.1-mini",
                messages = new[] { new { role = "user", content = $"Label the sentiment of review {i}: arrived late, works well.{padding}" } },
                max_tokens = 20,
            });
            if (keepBodies)
            {
                bodies.Add(Encoding.UTF8.GetBytes(body));
            }

            writer.Write($"{{\"custom_id\":\"r{i}\",\"method\":\"POST\",\"url\":\"/v1/chat/completions\",\"body\":{body}}}\n");
        }

        return new Workload(folder, path, bodies);
    }

    public void Dispose() => Directory.Delete(Folder, recursive: true);
}
