using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using Shepherd.Server;

namespace Shepherd.Bench;

/// <summary>
/// One <c>shepherd serve</c> child process, started as <c>dotnet shepherd.dll serve ARGS</c> and
/// ready once it has printed its listening line; killed and waited for on dispose. Its output is
/// read to the end as it comes, so neither pipe fills.
/// </summary>
internal sealed class ServeNode : IAsyncDisposable
{
    private const string ListeningPrefix = "Shepherd listening on ";
    private readonly Process _process;
    private readonly Task _stdout;
    private readonly bool _ownsFolder;

    private ServeNode(Process process, string folder, Uri baseUrl, Task stdout, bool ownsFolder)
    {
        _process = process;
        Folder = folder;
        _stdout = stdout;
        _ownsFolder = ownsFolder;
        ProcessId = process.Id;
        BaseUrl = baseUrl;
        Http = new HttpClient { BaseAddress = baseUrl, Timeout = TimeSpan.FromMinutes(30) };
    }

    /// <summary>The server's working directory; for <see cref="StartFreshAsync"/> its own temp folder, where its store lives.</summary>
    public string Folder { get; }

    /// <summary>The first url the server listens on.</summary>
    public Uri BaseUrl { get; }

    /// <summary>A client with <see cref="BaseUrl"/> as its base address.</summary>
    public HttpClient Http { get; }

    /// <summary>The id of the child process (the <c>dotnet</c> host, which runs the server in itself).</summary>
    public int ProcessId { get; }

    /// <summary>Starts <c>shepherd serve</c> with <paramref name="args"/> (what follows <c>serve</c>) in <paramref name="workingDirectory"/>, and returns once it listens.</summary>
    public static Task<ServeNode> StartAsync(string workingDirectory, IEnumerable<string> args) => StartAsync(workingDirectory, args, ownsFolder: false);

    /// <summary>
    /// A node alone on a fresh SQLite store in a temp folder of its own (removed on dispose),
    /// sending to the OpenAI-compatible <paramref name="provider"/> with <paramref name="concurrency"/>,
    /// and taking uploads of up to <paramref name="maxUploadBytes"/> and <paramref name="maxFileRequests"/>
    /// requests (never less than the server's defaults).
    /// </summary>
    public static async Task<ServeNode> StartFreshAsync(Uri provider, int concurrency, long maxUploadBytes, long maxFileRequests)
    {
        var folder = Path.Combine(Path.GetTempPath(), "shepherd-bench", Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(folder);
        try
        {
            var config = Path.Combine(folder, "shepherd.json");
            var limits = new ServerOptions();
            await File.WriteAllTextAsync(config, JsonSerializer.Serialize(new
            {
                server = new
                {
                    maxUploadBytes = Math.Max(limits.MaxUploadBytes, maxUploadBytes),
                    maxFileRequests = Math.Max(limits.MaxFileRequests, maxFileRequests),
                },
            }));
            return await StartAsync(folder, [.. Arguments(provider, Path.Combine(folder, "shepherd.db"), concurrency), "--config", config], ownsFolder: true);
        }
        catch
        {
            Directory.Delete(folder, recursive: true);
            throw;
        }
    }

    /// <summary>The arguments every bench node takes: its store, the OpenAI-compatible <paramref name="provider"/> and the concurrency.</summary>
    public static string[] Arguments(Uri provider, string store, int concurrency) =>
    [
        "--urls", "http://127.0.0.1:0", "--store", store, "--provider", "openai", "--base-url", new Uri(provider, "v1").ToString(),
        "--api-key", "bench", "--concurrency", concurrency.ToString(CultureInfo.InvariantCulture),
    ];

    private static async Task<ServeNode> StartAsync(string workingDirectory, IEnumerable<string> args, bool ownsFolder)
    {
        var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false, WorkingDirectory = workingDirectory };
        start.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "shepherd.dll"));
        start.ArgumentList.Add("serve");
        foreach (var arg in args)
        {
            start.ArgumentList.Add(arg);
        }

        var process = Process.Start(start)!;
        // The last lines of the log, for the message when the server does not start.
        var log = new ConcurrentQueue<string>();
        process.ErrorDataReceived += (_, e) =>
        {
            if (e.Data is { } line)
            {
                log.Enqueue(line);
                while (log.Count > 20 && log.TryDequeue(out string? _))
                {
                }
            }
        };
        process.BeginErrorReadLine();
        try
        {
            string? line;
            while ((line = await process.StandardOutput.ReadLineAsync()) is not null && !line.StartsWith(ListeningPrefix, StringComparison.Ordinal))
            {
            }

            if (line is null)
            {
                await process.WaitForExitAsync();
                throw new InvalidOperationException($"shepherd serve did not start ({process.ExitCode}): {string.Join('\n', log)}");
            }

            var url = line[ListeningPrefix.Length..].Split(", ")[0].Trim();
            return new ServeNode(process, workingDirectory, new Uri(url), DrainAsync(process.StandardOutput), ownsFolder);
        }
        catch
        {
            if (!process.HasExited)
            {
                process.Kill(entireProcessTree: true);
                await process.WaitForExitAsync();
            }

            process.Dispose();
            throw;
        }
    }

    /// <summary>The peak resident memory of the running server (<c>VmHWM</c> in <c>/proc/PID/status</c>), in bytes.</summary>
    public long PeakRssBytes()
    {
        const string Field = "VmHWM:";
        if (_process.HasExited)
        {
            throw new InvalidOperationException("The server has exited; its peak memory is read while it runs.");
        }

        var line = File.ReadLines($"/proc/{ProcessId}/status").FirstOrDefault(l => l.StartsWith(Field, StringComparison.Ordinal))
            ?? throw new InvalidOperationException($"/proc/{ProcessId}/status has no {Field} line.");
        return long.Parse(line[Field.Length..].Trim().Split(' ')[0], CultureInfo.InvariantCulture) * 1024;
    }

    /// <summary>Kills the server at once (SIGKILL), as a crash would.</summary>
    public void Kill() => _process.Kill(entireProcessTree: true);

    /// <summary>Uploads the batch input at <paramref name="path"/> through <c>POST /v1/files</c>, streamed from disk; returns the file's id.</summary>
    public async Task<string> UploadAsync(string path)
    {
        await using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16, useAsync: true);
        using var form = new MultipartFormDataContent();
        form.Add(new StringContent("batch"), "purpose");
        var file = new StreamContent(stream, 1 << 16);
        file.Headers.ContentType = new MediaTypeHeaderValue("application/jsonl");
        form.Add(file, "file", Path.GetFileName(path));
        using var response = await Http.PostAsync(new Uri("v1/files", UriKind.Relative), form);
        return await IdOfAsync(response, "The upload");
    }

    /// <summary>Creates a chat batch from an uploaded file through <c>POST /v1/batches</c>; returns the batch's id.</summary>
    public async Task<string> CreateFromFileAsync(string fileId)
    {
        var body = JsonSerializer.Serialize(new { input_file_id = fileId, endpoint = "/v1/chat/completions", completion_window = "24h" });
        using var content = new StringContent(body, Encoding.UTF8, "application/json");
        using var response = await Http.PostAsync(new Uri("v1/batches", UriKind.Relative), content);
        return await IdOfAsync(response, "The batch");
    }

    /// <summary>The batch object, from <c>GET /v1/batches/{id}</c>.</summary>
    public async Task<JsonElement> BatchAsync(string batchId)
    {
        using var batch = JsonDocument.Parse(await Http.GetStringAsync(new Uri($"v1/batches/{batchId}", UriKind.Relative)));
        return batch.RootElement.Clone();
    }

    /// <summary>Returns the batch once it has ended (completed, failed, cancelled or expired), looking every 50 ms.</summary>
    public async Task<JsonElement> WaitAsync(string batchId)
    {
        while (true)
        {
            var batch = await BatchAsync(batchId);
            if (batch.GetProperty("status").GetString() is "completed" or "failed" or "cancelled" or "expired")
            {
                return batch;
            }

            await Task.Delay(TimeSpan.FromMilliseconds(50), TimeProvider.System);
        }
    }

    /// <summary>Downloads a file's content (<c>GET /v1/files/{id}/content</c>) to <paramref name="path"/>, streamed; returns its number of lines.</summary>
    public async Task<long> DownloadAsync(string fileId, string path)
    {
        using var response = await Http.GetAsync(new Uri($"v1/files/{fileId}/content", UriKind.Relative), HttpCompletionOption.ResponseHeadersRead);
        response.EnsureSuccessStatusCode();
        await using var source = await response.Content.ReadAsStreamAsync();
        await using var target = new FileStream(path, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 16, useAsync: true);
        var buffer = new byte[1 << 16];
        var lines = 0L;
        var last = (byte)'\n';
        int read;
        while ((read = await source.ReadAsync(buffer)) > 0)
        {
            await target.WriteAsync(buffer.AsMemory(0, read));
            lines += buffer.AsSpan(0, read).Count((byte)'\n');
            last = buffer[read - 1];
        }

        // A last line without its newline counts too.
        return last == '\n' ? lines : lines + 1;
    }

    /// <summary>
    /// The OpenAI file path end to end: uploads <paramref name="input"/>, creates the batch, waits
    /// for it to complete and downloads its output file to <paramref name="output"/>. Throws unless
    /// the batch completed with exactly <paramref name="expected"/> output lines.
    /// </summary>
    public async Task<FileBatchRun> RunFileBatchAsync(string input, string output, long expected)
    {
        var watch = Stopwatch.StartNew();
        var fileId = await UploadAsync(input);
        var uploaded = watch.Elapsed;
        var batchId = await CreateFromFileAsync(fileId);
        var batch = await WaitAsync(batchId);
        if (batch.GetProperty("status").GetString() != "completed" || batch.GetProperty("output_file_id").GetString() is not { } outputId)
        {
            throw new InvalidOperationException($"Batch {batchId} ended without an output file: {batch}");
        }

        var finished = watch.Elapsed;
        var lines = await DownloadAsync(outputId, output);
        var seconds = watch.Elapsed.TotalSeconds;
        if (lines != expected)
        {
            throw new InvalidOperationException($"The output file of batch {batchId} has {lines} lines, not {expected}.");
        }

        return new FileBatchRun(
            Math.Round(seconds, 3),
            Math.Round(uploaded.TotalSeconds, 3),
            Math.Round(seconds - finished.TotalSeconds, 3),
            lines,
            batch.GetProperty("request_counts").GetProperty("failed").GetInt64());
    }

    public async ValueTask DisposeAsync()
    {
        if (!_process.HasExited)
        {
            _process.Kill(entireProcessTree: true);
        }

        await _process.WaitForExitAsync();
        await _stdout;
        _process.Dispose();
        Http.Dispose();
        if (_ownsFolder)
        {
            Directory.Delete(Folder, recursive: true);
        }
    }

    private static async Task DrainAsync(StreamReader reader)
    {
        try
        {
            while (await reader.ReadLineAsync() is not null)
            {
            }
        }
        catch (IOException)
        {
            // The pipe closed with the process.
        }
    }

    private static async Task<string> IdOfAsync(HttpResponseMessage response, string what)
    {
        var text = await response.Content.ReadAsStringAsync();
        return response.IsSuccessStatusCode
            ? JsonDocument.Parse(text).RootElement.GetProperty("id").GetString()!
            : throw new InvalidOperationException($"{what} was refused ({(int)response.StatusCode}): {text}");
    }
}

/// <summary>One batch through the OpenAI file path of a <c>shepherd serve</c> node.</summary>
/// <param name="WallSeconds">From the start of the upload to the end of the download.</param>
/// <param name="UploadSeconds">The upload alone.</param>
/// <param name="DownloadSeconds">The download of the output file alone.</param>
/// <param name="OutputLines">Lines of the output file.</param>
/// <param name="Failed">Requests the batch counts as failed.</param>
internal sealed record FileBatchRun(double WallSeconds, double UploadSeconds, double DownloadSeconds, long OutputLines, long Failed);
