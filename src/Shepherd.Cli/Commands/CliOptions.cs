using System.CommandLine;
using System.Globalization;

namespace Shepherd.Cli.Commands;

/// <summary>Options with range checks whose errors name the flag and the allowed values.</summary>
internal static class CliOptions
{
    /// <summary>
    /// The batch file argument of <c>run</c>, <c>submit</c> and <c>estimate</c>: a regular file
    /// that exists and can be read. A folder, a pipe or a device is refused before anything is
    /// done, since a batch is read twice (checked, then stored or uploaded) and again to resume.
    /// </summary>
    public static Argument<FileInfo> InputFile(string description)
    {
        var file = new Argument<FileInfo>("file") { Description = description };
        file.Validators.Add(result =>
        {
            if (result.GetValueOrDefault<FileInfo>() is { } info && CheckInput(info.FullName) is { } problem)
            {
                result.AddError(problem);
            }
        });
        return file;
    }

    /// <summary>Why <paramref name="path"/> cannot be a batch file, or null when it can.</summary>
    private static string? CheckInput(string path)
    {
        var shown = Running.ShownPath.Of(path);
        if (Directory.Exists(path))
        {
            return $"{shown} is a folder; give the batch file (one JSON request per line) inside it.";
        }

        var info = new FileInfo(path);
        if (!info.Exists)
        {
            return $"{shown} does not exist.";
        }

        // The length of the file a link points to, not of the link.
        if ((info.ResolveLinkTarget(returnFinalTarget: true) as FileInfo ?? info) is { Exists: true, Length: 0 })
        {
            return $"{shown} is empty, or is not a regular file (a pipe or a device): a batch file holds one JSON request per line.";
        }

        try
        {
            using var _ = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
            return null;
        }
        catch (UnauthorizedAccessException)
        {
            return $"{shown} cannot be read: permission denied.";
        }
        catch (IOException ex)
        {
            return $"{shown} cannot be read: {ex.Message}";
        }
    }

    /// <summary>
    /// A file holding a JSON Schema, read and checked as the command line is: the option's value is
    /// the schema's text. One that is missing, unreadable, not JSON or not a schema is refused
    /// naming the flag and the file.
    /// </summary>
    public static Option<string?> SchemaFile(string name, string description) => new(name)
    {
        Description = description,
        HelpName = "FILE",
        CustomParser = result =>
        {
            var path = result.Tokens.Single().Value;
            var shown = Running.ShownPath.Of(path);
            if (Directory.Exists(path))
            {
                result.AddError($"{name} {shown} is a folder; give the file that holds the schema.");
                return null;
            }

            string text;
            try
            {
                text = File.ReadAllText(path);
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or ArgumentException or NotSupportedException)
            {
                result.AddError($"{name} {shown} cannot be read: {(ex is FileNotFoundException or DirectoryNotFoundException ? "it does not exist" : ex.Message.TrimEnd('.'))}.");
                return null;
            }

            if (Engine.Formats.OutputRules.Problem(text) is { } problem)
            {
                result.AddError($"{name} {shown} is not a schema the answers can be checked against: {problem}");
                return null;
            }

            return text;
        },
    };

    public static Option<int> Int(string name, string description, int defaultValue, int min, int max) =>
        Checked(name, description, defaultValue, $"{name} must be between {min} and {max}",
            text => (int.TryParse(text, NumberStyles.Integer, CultureInfo.InvariantCulture, out var value) && value >= min && value <= max, value));

    public static Option<int?> OptionalInt(string name, string description, int min, int max) =>
        Checked<int?>(name, description, null, $"{name} must be a whole number from {min} to {max}",
            text => (int.TryParse(text, NumberStyles.Integer, CultureInfo.InvariantCulture, out var value) && value >= min && value <= max, value));

    public static Option<long?> OptionalLong(string name, string description, long min) =>
        Checked<long?>(name, description, null, $"{name} must be a whole number of at least {min}",
            text => (long.TryParse(text, NumberStyles.Integer, CultureInfo.InvariantCulture, out var value) && value >= min, value));

    public static Option<double> Seconds(string name, string description, double defaultValue, double min) =>
        Checked(name, description, defaultValue, $"{name} is a number of seconds, or a duration with its unit (90s, 10m), of at least {min} s", text => SecondsOf(text, min));

    public static Option<double?> OptionalSeconds(string name, string description, double min) =>
        Checked<double?>(name, description, null, $"{name} is a number of seconds, or a duration with its unit (90s, 10m), of at least {min} s", text => SecondsOf(text, min));

    /// <summary>Seconds given as a number (<c>600</c>) or as a duration with its unit (<c>10m</c>), as the duration options take them.</summary>
    private static (bool Valid, double Value) SecondsOf(string text, double min) =>
        Engine.Upstreams.RateLimitSnapshot.ParseDuration(text.Trim()) is { } duration && text.Trim() is [.., var last] && char.IsAsciiLetter(last)
            ? (duration.TotalSeconds >= min, duration.TotalSeconds)
            : Number(text, min, double.MaxValue);

    public static Option<double> Number(string name, string description, double defaultValue, double min, double max) =>
        Checked(name, description, defaultValue, $"{name} must be a number from {min} to {max}", text => Number(text, min, max));

    public static Option<double> Share(string name, string description) =>
        Checked(name, description, 0.0, $"{name} is a share between 0 and 1 (0.02 is 2%)", text => Number(text, 0, 1));

    /// <summary>
    /// An option whose text is parsed and checked in one place (<paramref name="parse"/> says
    /// whether it is of the form and in range), refused with <paramref name="rule"/> when it is not.
    /// </summary>
    private static Option<T> Checked<T>(string name, string description, T defaultValue, string rule, Func<string, (bool Valid, T Value)> parse) => new(name)
    {
        Description = description,
        DefaultValueFactory = _ => defaultValue,
        CustomParser = result =>
        {
            var text = result.Tokens.Single().Value;
            var (valid, value) = parse(text);
            if (valid)
            {
                return value;
            }

            result.AddError(text.Length == 0 ? $"{rule}; got nothing." : $"{rule}; got {text}.");
            return defaultValue;
        },
    };

    private static (bool Valid, double Value) Number(string text, double min, double max) =>
        (double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out var value) && double.IsFinite(value) && value >= min && value <= max, value);

    /// <summary>An amount of US dollars, 0 or more (<c>0.02</c> or <c>$0.02</c>), as billionths of a dollar.</summary>
    public static Option<long?> Usd(string name, string description) =>
        Parsed<long?>(name, description, "USD", $"{name} is an amount of US dollars of 0 or more, such as 2.50",
            text => decimal.TryParse(text.TrimStart('$'), NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out var usd)
                && Engine.Pricing.Cost.BudgetFromUsd(usd) is { } nanos ? nanos : null);

    /// <summary>A file's path, checked before anything is done: one that is empty, or holds what no path may, is refused naming the flag.</summary>
    public static Option<string?> FilePath(string name, string description, string helpName = "PATH", params string[] aliases)
    {
        var path = NotBlank(new Option<string?>(name, aliases) { Description = description, HelpName = helpName }, "a path");
        path.AcceptLegalFilePathsOnly();
        return path;
    }

    /// <summary>Refuses an empty value of <paramref name="option"/>, saying it needs <paramref name="what"/>.</summary>
    public static Option<string?> NotBlank(Option<string?> option, string what)
    {
        option.Validators.Add(result =>
        {
            if (result.Tokens.Count > 0 && string.IsNullOrWhiteSpace(result.GetValueOrDefault<string?>()))
            {
                result.AddError($"{option.Name} needs {what}; got an empty one.");
            }
        });
        return option;
    }

    public static Option<Uri?> Url(string name, string description) =>
        Parsed<Uri?>(name, description, null, $"{name} must be an absolute http or https url, such as https://api.openai.com/v1",
            text => Uri.TryCreate(text, UriKind.Absolute, out var uri) && (uri.Scheme == Uri.UriSchemeHttp || uri.Scheme == Uri.UriSchemeHttps) ? uri : null);

    /// <summary>
    /// An option with no default whose text <paramref name="parse"/> reads, null where it is not one;
    /// then the error is <paramref name="rule"/> with the text quoted.
    /// </summary>
    private static Option<T> Parsed<T>(string name, string description, string? helpName, string rule, Func<string, T> parse) => new(name)
    {
        Description = description,
        HelpName = helpName,
        CustomParser = result =>
        {
            var text = result.Tokens.Single().Value;
            if (parse(text) is { } value)
            {
                return value;
            }

            result.AddError($"{rule}; got '{text}'.");
            return default!;
        },
    };

    /// <summary>
    /// A duration with its unit (<c>30s</c>, <c>90m</c>, <c>24h</c>), longer than 0; its errors
    /// name the option as it was typed, <paramref name="name"/> or one of its <paramref name="aliases"/>.
    /// </summary>
    public static Option<TimeSpan?> Duration(string name, string description, params string[] aliases) =>
        Duration(name, description, allowZero: false, aliases);

    /// <summary>
    /// As <see cref="Duration(string, string, string[])"/>; with <paramref name="allowZero"/>, zero
    /// too (<c>0</c> or <c>0s</c>).
    /// </summary>
    public static Option<TimeSpan?> Duration(string name, string description, bool allowZero, params string[] aliases)
    {
        return new Option<TimeSpan?>(name, aliases)
        {
            Description = description,
            HelpName = "DURATION",
            CustomParser = result =>
            {
                var text = result.Tokens.Single().Value.Trim();
                if (allowZero && text == "0")
                {
                    return TimeSpan.Zero;
                }

                var typed = (result.Parent as System.CommandLine.Parsing.OptionResult)?.IdentifierToken?.Value ?? name;
                // A number alone could mean seconds or hours: the unit is asked for, not guessed.
                if (text.Length > 0 && char.IsAsciiLetter(text[^1]) && Engine.Upstreams.RateLimitSnapshot.ParseDuration(text) is { } duration)
                {
                    if (duration > TimeSpan.Zero || (allowZero && duration == TimeSpan.Zero))
                    {
                        return duration;
                    }

                    result.AddError($"{typed} must be longer than 0; got '{text}'.");
                    return null;
                }

                result.AddError($"{typed} is a duration with its unit, such as 24h, 90m or 30s; got '{text}'.");
                return null;
            },
        };
    }

    /// <summary>
    /// <c>--deadline DURATION</c> (or its older name <c>--completion-window</c>), of the commands
    /// that make a batch: when it must be done by, counted from its creation.
    /// </summary>
    public static Option<TimeSpan?> Deadline(string description) => Duration("--deadline", description, "--completion-window");

    /// <summary><c>--mode realtime|native|flex|auto</c>, of the commands that make a batch; null when it was left out.</summary>
    public static ChoiceOption<Engine.Model.BatchMode?> Mode(string description) => Choice<Engine.Model.BatchMode?>("--mode", description, null,
        [.. Engine.Model.BatchModeWords.All.Select(m => (m.Word, (Engine.Model.BatchMode?)m.Mode))]);

    /// <summary><c>--progress auto|live|plain|none</c>, of the commands that show progress.</summary>
    /// <summary><c>--format</c>: results as JSON lines (the batch API's own), or as a CSV or Parquet table of a row per request.</summary>
    public static ChoiceOption<Engine.Batches.ResultFormat> Format(string description) => Choice("--format", description, Engine.Batches.ResultFormat.Jsonl,
        ("jsonl", Engine.Batches.ResultFormat.Jsonl), ("csv", Engine.Batches.ResultFormat.Csv), ("parquet", Engine.Batches.ResultFormat.Parquet));

    public static ChoiceOption<Running.ProgressMode> Progress() => Choice("--progress", "auto (a live bar on a terminal), live, plain (a line every 5 s) or none", Running.ProgressMode.Auto,
        ("auto", Running.ProgressMode.Auto), ("live", Running.ProgressMode.Live), ("plain", Running.ProgressMode.Plain), ("none", Running.ProgressMode.None));

    /// <summary>
    /// An option of a few named values, given in lower case (<c>--provider openai</c>), as the help
    /// lists them. The help shows its default as the word a user types (a default that is not one
    /// of the words, such as "by the input", is left to the description); read it with
    /// <see cref="ChoiceOption{T}.ValueIn"/>.
    /// </summary>
    public static ChoiceOption<T> Choice<T>(string name, string description, T defaultValue, params (string Word, T Value)[] choices)
    {
        var words = string.Join(", ", choices.Select(c => c.Word));
        var shown = choices.Where(c => EqualityComparer<T>.Default.Equals(c.Value, defaultValue)).Select(c => $" [default: {c.Word}]").FirstOrDefault();
        return new ChoiceOption<T>(name, defaultValue)
        {
            Description = description + shown,
            HelpName = string.Join('|', choices.Select(c => c.Word)),
            CustomParser = result =>
            {
                var text = result.Tokens.Single().Value;
                foreach (var (word, value) in choices)
                {
                    if (string.Equals(word, text, StringComparison.OrdinalIgnoreCase))
                    {
                        return value;
                    }
                }

                result.AddError($"{name} is one of {words}; got '{text}'.");
                return defaultValue;
            },
        };
    }

    /// <summary><c>--upstream URL</c> or <c>--upstream URL@WEIGHT</c>, repeated.</summary>
    public static Option<List<Running.UpstreamTarget>> Upstreams(string name, string description)
    {
        return new Option<List<Running.UpstreamTarget>>(name)
        {
            Description = description,
            AllowMultipleArgumentsPerToken = false,
            CustomParser = result =>
            {
                var targets = new List<Running.UpstreamTarget>();
                foreach (var token in result.Tokens)
                {
                    var text = token.Value;
                    var at = text.LastIndexOf('@');
                    var weight = 1;
                    if (at > text.IndexOf("://", StringComparison.Ordinal) + 2 && at > 0)
                    {
                        if (!int.TryParse(text[(at + 1)..], System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out weight) || weight < 1)
                        {
                            result.AddError($"{name} {text}: the weight after @ must be a whole number of at least 1.");
                            return [];
                        }

                        text = text[..at];
                    }

                    if (!Uri.TryCreate(text, UriKind.Absolute, out var uri) || (uri.Scheme != Uri.UriSchemeHttp && uri.Scheme != Uri.UriSchemeHttps))
                    {
                        result.AddError($"{name} must be an absolute http or https url, optionally followed by @WEIGHT; got '{token.Value}'.");
                        return [];
                    }

                    targets.Add(new Running.UpstreamTarget(uri, weight));
                }

                return targets;
            },
        };
    }
}

/// <summary>
/// An option of <see cref="CliOptions.Choice{T}"/>. It has no default value of its own, so the help
/// does not show the default as a name from the code; <see cref="ValueIn"/> supplies it.
/// </summary>
internal sealed class ChoiceOption<T>(string name, T defaultValue) : Option<T>(name)
{
    /// <summary>The value given on the command line, or the default when the option was left out.</summary>
    public T ValueIn(ParseResult parse) => parse.GetResult(this) is null ? defaultValue : parse.GetValue(this)!;
}
