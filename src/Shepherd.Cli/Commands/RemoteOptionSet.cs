using System.CommandLine;
using System.Text.Json;
using Shepherd.Cli.Running;
using Shepherd.Client;
using Spectre.Console;

namespace Shepherd.Cli.Commands;

/// <summary>What a remote command's action is given: a client of the server, and where to write.</summary>
/// <param name="Parse">The command line.</param>
/// <param name="Client">A client of the server, with the key.</param>
/// <param name="Server">The server's root url, as shown in messages.</param>
/// <param name="Json">True with <c>--json</c>: one JSON document on stdout, nothing else there.</param>
/// <param name="Console">The terminal, for tables and the live progress bar.</param>
/// <param name="Stdout">Standard output.</param>
/// <param name="Stderr">Standard error.</param>
/// <param name="Time">The clock.</param>
internal sealed record RemoteContext(ParseResult Parse, ShepherdClient Client, Uri Server, bool Json, IAnsiConsole Console, TextWriter Stdout, TextWriter Stderr, TimeProvider Time);

/// <summary>
/// What the commands that talk to a Shepherd server (<c>submit</c>, <c>status</c>, <c>wait</c>,
/// <c>results</c>, <c>cancel</c>, <c>list</c>) share: <c>--server</c>, <c>--api-key</c> and
/// <c>--json</c>, with their environment defaults; the client made from them; and the server's
/// refusals turned into one line on stderr and an exit code.
/// </summary>
internal sealed class RemoteOptionSet
{
    /// <summary>The environment variable <c>--server</c> defaults to.</summary>
    public const string ServerVariable = "SHEPHERD_URL";

    /// <summary>The environment variable <c>--api-key</c> defaults to.</summary>
    public const string KeyVariable = "SHEPHERD_API_KEY";

    /// <summary>Where <c>shepherd serve</c> listens by default, and so where the remote commands look without <c>--server</c>.</summary>
    public static readonly Uri DefaultServer = new("http://127.0.0.1:8080");

    private readonly Option<Uri?> _server = CliOptions.Url("--server", $"The Shepherd server's url (default: ${ServerVariable}, else {DefaultServer.ToString().TrimEnd('/')})");
    private readonly Option<string?> _apiKey = new("--api-key") { Description = $"A gateway key of the server (default: ${KeyVariable}; the variable keeps it out of the process list)", HelpName = "KEY" };
    private readonly Option<bool> _json;

    public RemoteOptionSet(string jsonDescription)
    {
        _server.HelpName = "URL";
        _json = new Option<bool>("--json") { Description = jsonDescription };
    }

    /// <summary>The batch id argument of <c>status</c>, <c>wait</c>, <c>results</c> and <c>cancel</c>.</summary>
    public static Argument<string> BatchId()
    {
        var id = new Argument<string>("id") { Description = "The batch id, such as batch_0123abcd… (shepherd list shows them)" };
        id.Validators.Add(result =>
        {
            if (string.IsNullOrWhiteSpace(result.GetValueOrDefault<string>()))
            {
                result.AddError("The batch id is empty.");
            }
        });
        return id;
    }

    /// <summary>Adds the shared options to <paramref name="command"/>.</summary>
    public void AddTo(Command command)
    {
        command.Add(_server);
        command.Add(_apiKey);
        command.Add(_json);
    }

    /// <summary>
    /// Makes <paramref name="action"/> the command's action, with a client built from the options
    /// (tuned by <paramref name="tune"/>) and the server's errors mapped to exit codes.
    /// </summary>
    public void SetAction(Command command, Func<RemoteContext, CancellationToken, Task<int>> action, Action<ParseResult, ShepherdClientOptions>? tune = null)
    {
        command.SetAction(async (parse, cancellationToken) =>
        {
            var server = ServerUrl(parse.GetValue(_server));
            var key = parse.GetValue(_apiKey) ?? Environment.GetEnvironmentVariable(KeyVariable);
            var options = new ShepherdClientOptions
            {
                BaseUrl = server,
                ApiKey = string.IsNullOrEmpty(key) ? null : key,
                // A command a person waits on: a server that is down is said so within a second or two.
                MaxRetries = 2,
            };
            tune?.Invoke(parse, options);
            using var client = new ShepherdClient(options);
            var context = new RemoteContext(parse, client, server, parse.GetValue(_json), StdoutConsole(), Console.Out, Console.Error, TimeProvider.System);
            try
            {
                return await action(context, cancellationToken);
            }
            catch (ShepherdApiException ex)
            {
                var (exitCode, message) = Describe(ex, server, options.ApiKey is not null);
                return await Refusal.ReportAsync(context.Stdout, context.Stderr, context.Json, exitCode, message, Word(ex));
            }
            catch (BatchNotEndedException ex) when (ex.Batch is { } batch)
            {
                return await Refusal.ReportAsync(context.Stdout, context.Stderr, context.Json, ExitCodes.StillRunning,
                    $"shepherd: {batch.Id} is still {BatchStatusNames.ToApiName(batch.Status)} ({batch.Finished} of {batch.Total} requests ended); 'shepherd wait {batch.Id}' waits for it to end.");
            }
            catch (JsonException ex)
            {
                return await Refusal.ReportAsync(context.Stdout, context.Stderr, context.Json, ExitCodes.Error,
                    $"shepherd: {server} answered something that is not a Shepherd server's answer ({ex.Message}); check --server or ${ServerVariable}.");
            }
            catch (HttpRequestException ex)
            {
                return await Refusal.ReportAsync(context.Stdout, context.Stderr, context.Json, ExitCodes.Error, $"shepherd: cannot reach a Shepherd server at {server}: {ex.Message}");
            }
        });
    }

    /// <summary>The exit code and the one line that say what the server's refusal means to the user.</summary>
    /// <summary>What went wrong, as the <c>error</c> of a <c>--json</c> document: a script tells "no such batch" from "wrong key" from "no server" by it.</summary>
    private static string Word(ShepherdApiException ex) => ex.StatusCode switch
    {
        null when ex.ErrorCode == "timeout" => "timeout",
        null => "unreachable",
        401 => "unauthorized",
        403 => "forbidden",
        404 => "not_found",
        400 or 413 or 422 => "invalid_input",
        _ => ex.ErrorCode ?? "error",
    };

    internal static (int ExitCode, string Message) Describe(ShepherdApiException ex, Uri server, bool keyGiven)
    {
        var where = server.ToString().TrimEnd('/');
        return ex.StatusCode switch
        {
            null when ex.ErrorCode is "connection_failed" or "connection_refused" =>
                (ExitCodes.Error, $"shepherd: cannot reach a Shepherd server at {where} ({ex.InnerException?.Message ?? ex.Message}). Is 'shepherd serve' running there? Set the url with --server or ${ServerVariable}."),
            null when ex.ErrorCode == "timeout" =>
                (ExitCodes.Error, $"shepherd: the Shepherd server at {where} did not answer in time: {ex.Message}"),
            null => (ExitCodes.Error, $"shepherd: {ex.Message}"),
            401 => (ExitCodes.Error, keyGiven
                ? $"shepherd: the server at {where} refused the API key (401 Unauthorized). Pass one of its gateway keys with --api-key or ${KeyVariable}."
                : $"shepherd: the server at {where} requires an API key (401 Unauthorized). Pass one of its gateway keys with --api-key or ${KeyVariable}."),
            403 => (ExitCodes.Error, $"shepherd: the server at {where} does not allow this to the API key (403 Forbidden): {ex.Message}"),
            404 => (ExitCodes.Error, $"shepherd: not found (404): {ex.Message} A batch is visible only to the key that created it; 'shepherd list' shows yours."),
            400 or 413 or 422 => (ExitCodes.InvalidInput, $"shepherd: the server refused the request ({ex.StatusCode}): {ex.Message}"),
            _ => (ExitCodes.Error, $"shepherd: {ex.Message}"),
        };
    }

    /// <summary>
    /// <c>--server</c>, else <c>$SHEPHERD_URL</c>, else the default; a url that ends in <c>/v1</c>
    /// (as an OpenAI SDK is given) loses it, since the client adds it to every call.
    /// </summary>
    private static Uri ServerUrl(Uri? given)
    {
        var url = given;
        if (url is null && Environment.GetEnvironmentVariable(ServerVariable) is { Length: > 0 } text)
        {
            if (!Uri.TryCreate(text.Trim(), UriKind.Absolute, out url) || (url.Scheme != Uri.UriSchemeHttp && url.Scheme != Uri.UriSchemeHttps))
            {
                throw new UsageException($"${ServerVariable} must be an absolute http or https url, such as http://127.0.0.1:8080; got '{text}'.");
            }
        }

        url ??= DefaultServer;
        var path = url.AbsolutePath.TrimEnd('/');
        return path.EndsWith("/v1", StringComparison.OrdinalIgnoreCase)
            ? new UriBuilder(url) { Path = path[..^3] + "/" }.Uri
            : url;
    }

    /// <summary>The console of stdout; when stdout is a file or a pipe, tables are not wrapped at 80 columns.</summary>
    internal static IAnsiConsole StdoutConsole()
    {
        var console = AnsiConsole.Console;
        if (Console.IsOutputRedirected)
        {
            console.Profile.Width = Math.Max(console.Profile.Width, 200);
        }

        return console;
    }
}
