// Drop-in for `require("weroll/web/Realtime")`.
import { Realtime } from "../index";

export = Realtime;
