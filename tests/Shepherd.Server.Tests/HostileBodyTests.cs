using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using Shepherd.Testing;

namespace Shepherd.Server.Tests;

/// <summary>
/// Bodies with invalid UTF-8, lone surrogates, numbers no type holds and nesting past any limit,
/// in every value and name position of every create route, of the realtime door's calls and of
/// the upload: each is answered below 500, and a refusal comes in its door's envelope.
/// </summary>
public sealed class HostileBodyTests
{
    [Theory]
    [InlineData("/v1/batches", HostileBodies.InlineCreate)]
    [InlineData("/v1/batches/estimate", HostileBodies.InlineCreate)]
    [InlineData("/v1/messages/batches", HostileBodies.AnthropicCreate)]
    [InlineData("/v1/chat/completions", """{"model":"gpt-4o-mini","messages":[{"role":"user","content":"x"}],"max_tokens":5,"stream":false}""")]
    [InlineData("/v1/messages", """{"model":"claude-haiku-4.5","max_tokens":10,"messages":[{"role":"user","content":"hi"}]}""")]
    [InlineData("/v1/embeddings", """{"model":"text-embedding-3-small","input":"x"}""")]
    public async Task InvalidUtf8OrALoneSurrogateInAnInlineBody_Gets400_NotA500(string path, string body)
    {
        await using var server = await RunningServer.StartAsync();

        var faults = new List<string>();
        foreach (var hostile in HostileBodies.Of(body))
        {
            await CheckAsync(server.Http, path, hostile.Bytes, hostile.ToString(), faults);
        }

        AssertNone(faults);
    }

    [Theory]
    [InlineData("/v1/batches")]
    [InlineData("/v1/batches/estimate")]
    public async Task InvalidUtf8OrALoneSurrogateInAFileCreateBody_Gets400_NotA500(string path)
    {
        await using var server = await RunningServer.StartAsync();
        var fileId = await server.UploadAsync([HostileBodies.FileLine]);

        var faults = new List<string>();
        foreach (var hostile in HostileBodies.Of(HostileBodies.FileCreate(fileId)))
        {
            await CheckAsync(server.Http, path, hostile.Bytes, hostile.ToString(), faults);
        }

        AssertNone(faults);
    }

    [Fact]
    public async Task AFileOfHostileLines_IsUploadedCreatedAndEstimated_WithoutA500()
    {
        await using var server = await RunningServer.StartAsync();

        var faults = new List<string>();
        foreach (var hostile in HostileBodies.Of(HostileBodies.FileLine))
        {
            using var upload = await server.Http.PostAsync("/v1/files", HostileBodies.Multipart("input.jsonl"u8.ToArray(), "batch"u8.ToArray(), hostile.Bytes), TestContext.Current.CancellationToken);
            var text = await upload.Content.ReadAsStringAsync(TestContext.Current.CancellationToken);
            if (!upload.IsSuccessStatusCode)
            {
                faults.Add($"upload of a file with {hostile}: {(int)upload.StatusCode} {text}");
                continue;
            }

            var create = Encoding.UTF8.GetBytes(HostileBodies.FileCreate(JsonDocument.Parse(text).RootElement.GetProperty("id").GetString()!));
            await CheckAsync(server.Http, "/v1/batches", create, $"a file with {hostile}", faults);
            await CheckAsync(server.Http, "/v1/batches/estimate", create, $"a file with {hostile}", faults);
        }

        AssertNone(faults);
    }

    [Fact]
    public async Task InvalidUtf8OrALoneSurrogateInAnUploadsFilenameOrPurpose_IsAnsweredBelow500()
    {
        await using var server = await RunningServer.StartAsync();

        var faults = new List<string>();
        foreach (var (name, token) in HostileBodies.Strings)
        {
            var text = token[1..^1];
            var line = Encoding.UTF8.GetBytes(HostileBodies.FileLine);
            foreach (var (field, content) in new[]
            {
                ("filename", HostileBodies.Multipart([.. "in"u8, .. text, .. ".jsonl"u8], "batch"u8.ToArray(), line)),
                ("purpose", HostileBodies.Multipart("input.jsonl"u8.ToArray(), text, line)),
            })
            {
                using var response = await server.Http.PostAsync("/v1/files", content, TestContext.Current.CancellationToken);
                if (HostileBodies.Fault("/v1/files", (int)response.StatusCode, await response.Content.ReadAsStringAsync(TestContext.Current.CancellationToken)) is { } fault)
                {
                    faults.Add($"{name} in the {field}: {fault}");
                }

                content.Dispose();
            }
        }

        AssertNone(faults);
    }

    private static async Task CheckAsync(HttpClient http, string path, byte[] body, string what, List<string> faults)
    {
        using var content = new ByteArrayContent(body);
        content.Headers.ContentType = new MediaTypeHeaderValue("application/json");
        using var response = await http.PostAsync(path, content, TestContext.Current.CancellationToken);
        if (HostileBodies.Fault(path, (int)response.StatusCode, await response.Content.ReadAsStringAsync(TestContext.Current.CancellationToken)) is { } fault)
        {
            faults.Add($"{path} with {what}: {fault}");
        }
    }

    private static void AssertNone(List<string> faults) =>
        Assert.True(faults.Count == 0, $"{faults.Count} faults:\n{string.Join('\n', faults)}");
}
