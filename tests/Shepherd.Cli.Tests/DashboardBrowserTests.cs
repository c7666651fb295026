using System.Diagnostics;
using System.Globalization;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using Microsoft.Playwright;
using Shepherd.Testing;

namespace Shepherd.Cli.Tests;

/// <summary>The dashboard in a real browser (Debian's Chromium driven by Playwright) against a real <c>shepherd serve</c>.</summary>
public sealed class DashboardBrowserTests : IDisposable
{
    private const string KeyA = "sk-team-a";
    private const string KeyB = "sk-team-b";
    private readonly TempDirectory _folder = new();

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public void Dispose() => _folder.Dispose();

    [Fact]
    public async Task Chromium_RunsThePagesScript()
    {
        await using var chromium = await Chromium.LaunchAsync();
        var page = await chromium.Browser.NewPageAsync();
        await page.SetContentAsync("<p id=out></p><script>document.getElementById('out').textContent = String(6 * 7);</script>");

        Assert.Equal("42", await page.TextContentAsync("#out"));
    }

    [Fact]
    public async Task Dashboard_ShowsTheKeysOwnBatches_FollowsOneAsItRuns_AndCancelsIt()
    {
        await using var chromium = await Chromium.LaunchAsync();
        using var server = ShepherdProcess.Start(_folder.Path,
        [
            "serve", "--urls", "http://127.0.0.1:0", "--store", _folder.File("s.db"), "--provider", "sim",
            "--sim-latency", "200", "--sim-jitter", "50", "--sim-context-tokens", "100", "--concurrency", "2", "--gateway-key", KeyA, "--gateway-key", KeyB,
        ]);
        var url = new Uri((await server.WaitForOutputAsync("Shepherd listening on")).Split(' ')[^1]);
        using var teamA = Client(url, KeyA);
        using var teamB = Client(url, KeyB);

        var otherTenants = await CreateBatchAsync(teamB, 1);
        // A short batch that ends before the long one starts, so the list shows a finished batch beside a running one.
        var finished = await CreateBatchAsync(teamA, 3);
        await Poll.UntilAsync(() => DashboardBatchAsync(teamA, finished), b => b.GetProperty("status").GetString() == "completed", TimeSpan.FromSeconds(20), Ct);
        // 200 answers of about 200 ms, two at a time: some 20 s, long enough to watch and then cancel it.
        // Every tenth prompt is too long for the simulated model, a permanent failure for the error breakdown.
        var running = await CreateBatchAsync(teamA, 200, tooLongEvery: 10, metadata: """{"job":"nightly <reviews>","owner":"team-a & co"}""");

        var page = await chromium.Browser.NewPageAsync(new() { ViewportSize = new() { Width = 1280, Height = 800 } });
        var pageErrors = new List<string>();
        page.PageError += (_, error) => pageErrors.Add(error);
        page.Dialog += (_, dialog) => dialog.AcceptAsync();
        await page.GotoAsync(url.ToString());
        await page.FillAsync("#key-input", KeyA);
        await page.ClickAsync("#key-save");

        // The list: this key's batches, newest first, and nothing of the other key's.
        var row = page.Locator($"#batches tr[data-batch-id='{running}']");
        await row.WaitForAsync(new() { Timeout = 15_000 });
        await page.Locator($"#batches tr[data-batch-id='{finished}'] .badge[data-status='completed']").WaitForAsync(new() { Timeout = 15_000 });
        Assert.Equal([running, finished], await page.Locator("#batches tr[data-batch-id]").EvaluateAllAsync<string[]>("rows => rows.map(r => r.dataset.batchId)"));
        Assert.Equal(0, await page.Locator($"#batches tr[data-batch-id='{otherTenants}']").CountAsync());
        Assert.Equal("inline", await row.Locator(".door").TextContentAsync());
        await page.ScreenshotAsync(new() { Path = Screenshot("dashboard-list.png") });

        // The batch's page: its progress moves on without a reload.
        await row.Locator("a").ClickAsync();
        await Poll.UntilAsync(async () => await page.TextContentAsync("#count-total") == "200", TimeSpan.FromSeconds(15), Ct);
        Assert.Equal(running, await page.TextContentAsync("#batch-id"));
        var before = await ProgressWidthAsync(page);
        var after = await Poll.UntilAsync(() => ProgressWidthAsync(page), width => width > before, TimeSpan.FromSeconds(15), Ct);
        Assert.InRange(after, before, 100);

        // What it shows is what the API says, within a refresh: the API is read just after the page's own
        // refresh, so the two agree unless an answer lands in between (then the next refresh is compared).
        var shown = await Poll.UntilAsync(async () =>
        {
            await page.WaitForResponseAsync(r => r.Url.EndsWith($"/v1/dashboard/batches/{running}", StringComparison.Ordinal), new() { Timeout = 5_000 });
            var inApi = Counts(await DashboardBatchAsync(teamA, running));
            return (OnPage: await CountsOnPageAsync(page), InApi: inApi);
        }, pair => pair.OnPage == pair.InApi, TimeSpan.FromSeconds(20), Ct);
        Assert.Equal(200, shown.OnPage.Total);
        // Metadata is shown as text, whatever it holds.
        Assert.Equal("nightly <reviews>", await page.TextContentAsync("#metadata tr:has(th:text-is('job')) td"));

        // A screenshot once the chart has a few seconds to show, while the batch still runs.
        await page.SetViewportSizeAsync(1280, 1000);
        await Poll.UntilAsync(async () => (await CountsOnPageAsync(page)).Succeeded >= 40, TimeSpan.FromSeconds(20), Ct);
        Assert.Equal("in_progress", await page.GetAttributeAsync("#batch-status", "data-status"));
        await page.ScreenshotAsync(new() { Path = Screenshot("dashboard-batch.png"), FullPage = true });

        // Cancel: confirmed in the dialog, then the page and the API agree that it is cancelled.
        Assert.True(await page.IsVisibleAsync("#cancel"));
        await page.ClickAsync("#cancel");
        await Poll.UntilAsync(async () => await page.GetAttributeAsync("#batch-status", "data-status") == "cancelled", TimeSpan.FromSeconds(20), Ct);
        var ended = await DashboardBatchAsync(teamA, running);
        Assert.Equal("cancelled", ended.GetProperty("status").GetString());
        Assert.Equal("cancelled", (await GetJsonAsync(teamA, $"/v1/batches/{running}")).GetProperty("status").GetString());
        Assert.True(await page.IsHiddenAsync("#cancel"));
        // An ended batch is read every 5 s: its final counts are on the page within one such refresh.
        var final = await Poll.UntilAsync(async () => (OnPage: await CountsOnPageAsync(page), InApi: Counts(await DashboardBatchAsync(teamA, running))),
            pair => pair.OnPage == pair.InApi, TimeSpan.FromSeconds(12), Ct);
        Assert.True(final.InApi.Cancelled > 0, final.ToString());
        Assert.True(final.InApi.Failed > 0, final.ToString());
        var errors = (await GetJsonAsync(teamA, $"/v1/dashboard/batches/{running}")).GetProperty("errors").EnumerateArray()
            .Select(e => $"{e.GetProperty("kind").GetString()}={e.GetProperty("count").GetInt64()}").ToArray();
        await Poll.UntilAsync(() => page.Locator("#errors tbody tr[data-kind]").EvaluateAllAsync<string[]>("rows => rows.map(r => r.dataset.kind + '=' + r.cells[1].textContent.replace(/,/g, ''))"),
            onPage => onPage.SequenceEqual(errors), TimeSpan.FromSeconds(10), Ct);

        // The other key's batch is not found from this key, even by its id.
        await page.GotoAsync(new Uri(url, "/#/batch/" + otherTenants).ToString());
        await page.Locator("#notice").WaitForAsync(new() { Timeout = 10_000 });
        Assert.Contains("No batch", await page.TextContentAsync("#notice"), StringComparison.Ordinal);
        Assert.Empty(pageErrors);
    }

    [Fact]
    public async Task Dashboard_OfARefusedBatch_ListsWhyItsInputWasRefused()
    {
        await using var chromium = await Chromium.LaunchAsync();
        using var server = ShepherdProcess.Start(_folder.Path, ["serve", "--urls", "http://127.0.0.1:0", "--store", _folder.File("s.db"), "--provider", "sim", "--gateway-key", KeyA]);
        var url = new Uri((await server.WaitForOutputAsync("Shepherd listening on")).Split(' ')[^1]);
        using var teamA = Client(url, KeyA);
        var good = BatchFiles.OpenAIChat(1)[0].Line;
        using var form = new MultipartFormDataContent
        {
            { new StringContent("batch"), "purpose" },
            { new StringContent($"{good}\n{{not json\n"), "file", "broken.jsonl" },
        };
        using var uploaded = await teamA.PostAsync("/v1/files", form, Ct);
        var file = JsonDocument.Parse(await uploaded.Content.ReadAsStringAsync(Ct)).RootElement.GetProperty("id").GetString();
        using var created = await teamA.PostAsync("/v1/batches",
            new StringContent($$"""{"input_file_id":"{{file}}","endpoint":"/v1/chat/completions","completion_window":"24h"}""", Encoding.UTF8, "application/json"), Ct);
        var id = JsonDocument.Parse(await created.Content.ReadAsStringAsync(Ct)).RootElement.GetProperty("id").GetString()!;
        await Poll.UntilAsync(() => DashboardBatchAsync(teamA, id), b => b.GetProperty("status").GetString() == "failed", TimeSpan.FromSeconds(20), Ct);

        var page = await chromium.Browser.NewPageAsync();
        await page.GotoAsync(url.ToString());
        await page.FillAsync("#key-input", KeyA);
        await page.ClickAsync("#key-save");
        await page.GotoAsync(new Uri(url, "/#/batch/" + id).ToString());
        await page.Locator("#input-errors tbody tr[data-code='invalid_json_line']").WaitForAsync(new() { Timeout = 10_000 });

        Assert.Equal(["2", "invalid_json_line"], await page.Locator("#input-errors tbody tr td").EvaluateAllAsync<string[]>("cells => cells.slice(0, 2).map(c => c.textContent)"));
        Assert.Contains("refused this batch's input: 1 problem", await page.TextContentAsync("#input-refused-text"), StringComparison.Ordinal);
        Assert.True(await page.IsHiddenAsync("#errors"));
        Assert.Equal("input refused: nothing was sent", await page.TextContentAsync("#progress-text"));
    }

    private sealed record PageCounts(long Total, long Succeeded, long Failed, long Cancelled, long Expired, long Cached);

    /// <summary>The six counts as the page shows them, read at one instant.</summary>
    private static async Task<PageCounts> CountsOnPageAsync(IPage page)
    {
        var counts = await page.EvaluateAsync<long[]>(
            "['total', 'succeeded', 'failed', 'cancelled', 'expired', 'cached'].map(k => Number(document.getElementById('count-' + k).textContent.replace(/,/g, '')))");
        return new PageCounts(counts[0], counts[1], counts[2], counts[3], counts[4], counts[5]);
    }

    private static PageCounts Counts(JsonElement batch) => new(
        batch.GetProperty("total").GetInt64(), batch.GetProperty("succeeded").GetInt64(), batch.GetProperty("failed").GetInt64(),
        batch.GetProperty("cancelled").GetInt64(), batch.GetProperty("expired").GetInt64(), batch.GetProperty("cached").GetInt64());

    private static async Task<double> ProgressWidthAsync(IPage page)
    {
        var width = await page.EvalOnSelectorAsync<string>("#batch-progress .bar", "bar => bar.style.width");
        return string.IsNullOrEmpty(width) ? 0 : double.Parse(width.TrimEnd('%'), CultureInfo.InvariantCulture);
    }

    private static HttpClient Client(Uri url, string key)
    {
        var http = new HttpClient { BaseAddress = url };
        http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", key);
        return http;
    }

    private static async Task<string> CreateBatchAsync(HttpClient http, int prompts, int tooLongEvery = 0, string metadata = "{}")
    {
        var tooLong = string.Concat(Enumerable.Repeat(" and more words", 60));
        var requests = string.Join(",", Enumerable.Range(0, prompts).Select(i =>
            $$"""{"custom_id":"q{{i}}","prompt":"question {{i}}{{(tooLongEvery > 0 && i % tooLongEvery == tooLongEvery - 1 ? tooLong : "")}}"}"""));
        using var created = await http.PostAsync("/v1/batches",
            new StringContent($$"""{"model":"gpt-4o-mini","metadata":{{metadata}},"requests":[{{requests}}]}""", Encoding.UTF8, "application/json"), Ct);
        var text = await created.Content.ReadAsStringAsync(Ct);
        Assert.True(created.IsSuccessStatusCode, text);
        return JsonDocument.Parse(text).RootElement.GetProperty("id").GetString()!;
    }

    private static async Task<JsonElement> DashboardBatchAsync(HttpClient http, string id) =>
        (await GetJsonAsync(http, $"/v1/dashboard/batches/{id}")).GetProperty("batch");

    private static async Task<JsonElement> GetJsonAsync(HttpClient http, string path)
    {
        using var response = await http.GetAsync(path, Ct);
        var text = await response.Content.ReadAsStringAsync(Ct);
        Assert.True(response.IsSuccessStatusCode, $"{path}: {(int)response.StatusCode} {text}");
        return JsonDocument.Parse(text).RootElement.Clone();
    }

    /// <summary>
    /// Where a screenshot goes: beside the test binaries, or, with SHEPHERD_UPDATE_SCREENSHOTS=1,
    /// into docs/img of the repository (found by its solution file), for the docs to show.
    /// </summary>
    private static string Screenshot(string name)
    {
        if (Environment.GetEnvironmentVariable("SHEPHERD_UPDATE_SCREENSHOTS") != "1")
        {
            return Path.Combine(Directory.CreateDirectory(Path.Combine(AppContext.BaseDirectory, "screenshots")).FullName, name);
        }

        var images = Directory.CreateDirectory(RepositoryFiles.Path("docs", "img"));
        return Path.Combine(images.FullName, name);
    }

    /// <summary>Debian's Chromium, installed once per test process when it is missing and the process may install it.</summary>
    private sealed class Chromium(IPlaywright playwright, IBrowser browser) : IAsyncDisposable
    {
        private const string ExecutablePath = "/usr/bin/chromium";
        private static readonly Lazy<Task<string?>> Installed = new(InstallAsync);

        /// <summary>Starts a headless Chromium, or skips the test saying why there is none.</summary>
        public static async Task<Chromium> LaunchAsync()
        {
            var missing = await Installed.Value.WaitAsync(Ct);
            if (missing is not null)
            {
                Assert.Skip(missing);
            }

            var playwright = await Playwright.CreateAsync();
            try
            {
                // No sandbox: the tests run as root in a container, where Chromium's sandbox cannot start.
                var browser = await playwright.Chromium.LaunchAsync(new() { ExecutablePath = ExecutablePath, Headless = true, Args = ["--no-sandbox"] });
                return new Chromium(playwright, browser);
            }
            catch
            {
                playwright.Dispose();
                throw;
            }
        }

        public IBrowser Browser => browser;

        public async ValueTask DisposeAsync()
        {
            await browser.DisposeAsync();
            playwright.Dispose();
        }

        /// <summary>Null when Chromium is there, or why it is not.</summary>
        private static async Task<string?> InstallAsync()
        {
            if (File.Exists(ExecutablePath))
            {
                return null;
            }

            if (!OperatingSystem.IsLinux() || Environment.UserName != "root")
            {
                return $"{ExecutablePath} is missing and this process cannot install it (not root on Linux); run 'apt-get install chromium'.";
            }

            var (code, output) = await AptGetAsync("install", "-y", "chromium");
            if (code != 0 && !File.Exists(ExecutablePath))
            {
                // A fresh container has no package lists: fetch them, then try once more.
                var update = await AptGetAsync("update");
                (code, output) = update.Code == 0 ? await AptGetAsync("install", "-y", "chromium") : update;
            }

            return File.Exists(ExecutablePath)
                ? null
                : $"{ExecutablePath} is missing and 'apt-get install -y chromium' did not install it (exit {code}): {output[Math.Max(0, output.Length - 600)..]}";
        }

        private static async Task<(int Code, string Output)> AptGetAsync(params string[] args)
        {
            var start = new ProcessStartInfo("apt-get") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
            foreach (var arg in args)
            {
                start.ArgumentList.Add(arg);
            }

            start.Environment["DEBIAN_FRONTEND"] = "noninteractive";
            try
            {
                using var process = Process.Start(start)!;
                var stdout = process.StandardOutput.ReadToEndAsync(CancellationToken.None);
                var stderr = process.StandardError.ReadToEndAsync(CancellationToken.None);
                // Not the test's token: the install is shared by every test of the process and must not be left half done.
                await process.WaitForExitAsync(CancellationToken.None).WaitAsync(TimeSpan.FromMinutes(5));
                return (process.ExitCode, await stdout + await stderr);
            }
            catch (Exception e) when (e is System.ComponentModel.Win32Exception or TimeoutException)
            {
                return (-1, e.Message);
            }
        }
    }
}

